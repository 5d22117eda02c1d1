package gitops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeGit writes an executable shell script standing in for git and returns
// its path. Real git cannot be held mid-pack on cue; the script can, and it
// is told apart from a killed one by what its SIGTERM trap leaves behind.
func fakeGit(tb testing.TB, body string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "git")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// fifo makes a named pipe: opening one end blocks until the other end is
// opened, which is how the tests wait for the fake git without sleeping.
func fifo(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestPackRefsTerminatesGit: when a pack's context ends, git gets SIGTERM
// (on which it removes its lock files), not SIGKILL.
func TestPackRefsTerminatesGit(t *testing.T) {
	f := newFixture(t)
	ready := fifo(t, "ready")
	mark := filepath.Join(t.TempDir(), "signal")
	// Like git pack-refs: take packed-refs.lock ($4 is the --git-dir), and
	// remove it on SIGTERM.
	f.root.GitBinary = fakeGit(t, `lock="$4/packed-refs.lock"
: > "$lock"
trap 'rm -f "$lock"; echo TERM > `+mark+`; kill $pid; exit 143' TERM
sleep 600 >/dev/null 2>&1 &
pid=$!
echo started > `+ready+`
wait $pid
`)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.repo.packRefs(ctx)
	}()
	if _, err := os.ReadFile(ready); err != nil { // returns once git runs
		t.Fatal(err)
	}
	cancel()
	<-done
	got, err := os.ReadFile(mark)
	if err != nil || string(got) != "TERM\n" {
		t.Fatalf("git was not sent SIGTERM (signal mark: %q, %v)", got, err)
	}
	if _, err := os.Lstat(filepath.Join(f.repo.Dir(), "packed-refs.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("packed-refs.lock left behind: %v", err)
	}
}

// TestCloseWaitsForPackAndStopsNewOnes: Close returns only after the running
// pack's git has exited, and no pack starts once Close has returned.
func TestCloseWaitsForPackAndStopsNewOnes(t *testing.T) {
	f := newFixture(t)
	ready, release := fifo(t, "ready"), fifo(t, "release")
	finished := filepath.Join(t.TempDir(), "finished")
	f.root.GitBinary = fakeGit(t, `echo started > `+ready+`
read line < `+release+`
: > `+finished+`
`)
	if !f.repo.notePacking(packThreshold) {
		t.Fatal("no pack started at the threshold")
	}
	if _, err := os.ReadFile(ready); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		f.root.Close()
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a pack was running")
	default:
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-closed
	if _, err := os.Stat(finished); err != nil {
		t.Fatalf("Close returned before the pack's git exited: %v", err)
	}
	if f.repo.notePacking(10 * packThreshold) {
		t.Fatal("a pack started after Close")
	}
}

// TestClosePackingRace: creates past the threshold concurrent with Close,
// with real git. Under -race this checks that no WaitGroup Add races Close's
// Wait; and a notePacking call that begins after Close returned starts no
// pack.
func TestClosePackingRace(t *testing.T) {
	f := newFixture(t)
	var closedDone atomic.Bool
	stop := make(chan struct{})
	firstPack := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := closedDone.Load()
				if f.repo.notePacking(packThreshold) {
					once.Do(func() { close(firstPack) })
					if after {
						t.Error("a pack started after Close returned")
					}
				}
			}
		}()
	}
	<-firstPack
	f.root.Close()
	closedDone.Store(true)
	close(stop)
	wg.Wait()
	f.repo.packMu.Lock()
	packing := f.repo.packing
	f.repo.packMu.Unlock()
	if packing {
		t.Fatal("a pack is running after Close")
	}
	if out := f.git.Git(t, "for-each-ref", "refs/heads/"); !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("refs after packing: %q", out)
	}
}

func TestPackThresholdGrowsWithPackedRefs(t *testing.T) {
	for _, tc := range []struct {
		packedRefs int64
		want       int64
	}{
		{0, packThreshold},
		{10_000, packThreshold},
		{100_000, 500},
		{1_000_000, 5000},
	} {
		if got := packThresholdFor(tc.packedRefs * packedRefBytes); got != tc.want {
			t.Errorf("%d packed refs: pack after %d creates, want %d", tc.packedRefs, got, tc.want)
		}
	}
}

// TestFailedPackIsRetriedAfterPause: the refs a failed pack left loose still
// count, so the first create after a pause packs them; during the pause no
// create starts a git process.
func TestFailedPackIsRetriedAfterPause(t *testing.T) {
	f := newFixture(t)
	f.root.GitBinary = fakeGit(t, "echo 'fatal: simulated' >&2; exit 1\n")
	if !f.repo.notePacking(packThreshold) {
		t.Fatal("no pack started at the threshold")
	}
	f.repo.packs.Wait()
	if got := f.repo.loose.Load(); got != packThreshold {
		t.Fatalf("loose count after a failed pack = %d, want %d (the refs are still loose)", got, packThreshold)
	}
	if f.repo.notePacking(1) {
		t.Fatal("a pack started during the pause after a failure")
	}
	f.repo.packMu.Lock()
	failures, retryAt := f.repo.packFailures, f.repo.packRetryAt
	f.repo.packRetryAt = time.Now().Add(-time.Second) // the pause is over
	f.repo.packMu.Unlock()
	if failures != 1 || time.Until(retryAt) <= 0 {
		t.Fatalf("after one failure: failures %d, retry in %v", failures, time.Until(retryAt))
	}
	f.root.GitBinary = "" // the cause is gone: real git
	if !f.repo.notePacking(1) {
		t.Fatal("the first create after the pause did not pack")
	}
	f.repo.packs.Wait()
	f.repo.packMu.Lock()
	defer f.repo.packMu.Unlock()
	if f.repo.loose.Load() != 0 || f.repo.packFailures != 0 || !f.repo.packRetryAt.IsZero() {
		t.Fatalf("after a good pack: loose %d, failures %d, retry at %v", f.repo.loose.Load(), f.repo.packFailures, f.repo.packRetryAt)
	}
}

func TestPackRetryDelay(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {6, 160 * time.Second}, {7, 5 * time.Minute}, {1000, 5 * time.Minute}} {
		if got := packRetryDelay(c.failures); got != c.want {
			t.Errorf("packRetryDelay(%d) = %v, want %v", c.failures, got, c.want)
		}
	}
}
