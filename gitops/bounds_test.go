package gitops

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/testdata"
)

// TestFetchKeepsAHostileUpstreamsStderrBounded: an upstream streaming 64
// MiB of `remote:` noise leaves at most git's first and last 16 KiB in the
// error, whose end still says how the upstream ended.
func TestFetchKeepsAHostileUpstreamsStderrBounded(t *testing.T) {
	u := testdata.StartNoisyUpstream(t, 64<<20)
	root := &Root{Dir: t.TempDir()}
	t.Cleanup(root.Close)
	name := ProjectName("noisy/app")
	if _, err := root.Stage(t.Context(), name, MirrorConfig{Upstream: u.URL()}); err != nil {
		t.Fatal(err)
	}
	err := root.FetchStaged(t.Context(), name, Upstream{URL: u.URL()}, CloneRefspecs())
	if err == nil {
		t.Fatal("a fetch from the noisy upstream succeeded")
	}
	var unavailable *UpstreamUnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("fetch from the noisy upstream: %v", err)
	}
	msg := unavailable.Err.Error() // what git said, for the log
	t.Logf("64 MiB of remote: noise, a cause of %d bytes, ending %q", len(msg), msg[max(0, len(msg)-120):])
	if len(msg) > 3*gitexec.DefaultStderrKeep || !strings.Contains(msg, "hangs up") || !strings.Contains(msg, "left out") {
		t.Errorf("the error holds %d bytes of git's stderr", len(msg))
	}
}

// TestFetchBelowTheDiskFloor: with the floor above the free space, a fetch
// is refused before git starts (the upstream sees nothing); with the floor
// crossed while a clone writes its pack, git is stopped, its partial pack
// removed, and no ref written.
func TestFetchBelowTheDiskFloor(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	probe := &limits.DiskFloor{Path: root.Dir}
	sp, err := probe.Space()
	if err != nil {
		t.Fatal(err)
	}
	root.DiskFloor = &limits.DiskFloor{Path: root.Dir, Min: limits.Size{Bytes: sp.Free + 1<<30}}
	err = root.FetchStaged(t.Context(), name, up, CloneRefspecs())
	var low *limits.LowDiskError
	if !errors.As(err, &low) || u.Fetches() != 0 {
		t.Fatalf("floor above the free space: %v, upstream asked %d times", err, u.Fetches())
	}
	t.Logf("refused: %v", err)

	// What a clone whose process died left of its pack (git removes it
	// on SIGTERM, not on SIGKILL) goes with the next clone.
	packDir := filepath.Join(root.stagingPath(name), "objects", "pack")
	leftover := filepath.Join(packDir, "tmp_pack_dead01")
	if err := os.WriteFile(leftover, make([]byte, 1<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(leftover, old, old); err != nil {
		t.Fatal(err)
	}

	// 64 MiB that does not compress: the clone's pack takes the free
	// space below a floor set 16 MiB under it.
	big := make([]byte, 64<<20)
	rand.Read(big)
	u.Repo.Commit(t, "main", map[string]string{"big.bin": string(big)}, "big")
	if sp, err = probe.Space(); err != nil {
		t.Fatal(err)
	}
	root.DiskFloor = &limits.DiskFloor{Path: root.Dir, Min: limits.Size{Bytes: sp.Free - 16<<20}}
	root.DiskPoll = 20 * time.Millisecond
	err = root.FetchStaged(t.Context(), name, up, CloneRefspecs())
	if !errors.As(err, &low) {
		t.Fatalf("a clone crossing the floor: %v", err)
	}
	t.Logf("stopped: %v (upstream served %d fetches)", err, u.UploadPackPosts())
	dir := root.stagingPath(name)
	if left, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*")); len(left) > 0 {
		t.Errorf("the stopped clone left %q", left)
	}
	if got := refAt(t, dir, "refs/heads/main"); got != "" {
		t.Errorf("the stopped clone wrote refs/heads/main = %s", got)
	}
	if u.UploadPackPosts() == 0 {
		t.Error("the clone never reached the upstream: not stopped while running")
	}
}

// TestCloneOutlastsTheGitTimeout: a fetch is bounded by its caller's
// deadline (a clone's --clone-timeout), not by --git-timeout: an upstream
// that answers after twice the git timeout is fetched from.
func TestCloneOutlastsTheGitTimeout(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	root.GitTimeout = 500 * time.Millisecond
	root.killGrace = 100 * time.Millisecond
	u.Stall()
	released := make(chan struct{})
	go func() {
		defer close(released)
		waitStalled(t, u)
		time.Sleep(2 * root.GitTimeout) // the upstream is slow: the point of the test
		u.Release()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	err := root.FetchStaged(ctx, name, Upstream{URL: u.URL(), Credential: upstreamCredential}, CloneRefspecs())
	<-released
	if err != nil {
		t.Fatalf("a clone of %v with --git-timeout %v: %v", time.Since(start).Round(time.Millisecond), root.GitTimeout, err)
	}
	t.Logf("cloned in %v with --git-timeout %v", time.Since(start).Round(time.Millisecond), root.GitTimeout)
	if got := refAt(t, root.stagingPath(name), "refs/heads/main"); got != u.Second {
		t.Errorf("refs/heads/main = %q, want %s", got, u.Second)
	}
}

func waitStalled(t *testing.T, u *testdata.Upstream) {
	waitFor(t, "a request at the stalled upstream", func() bool { return u.Stalled() > 0 })
}

// TestUpstreamFetchesAreBounded: with one turn, a second clone and a
// mirror's fetch wait for it and, their deadline passed, get
// *limits.BusyError without reaching the upstream; the first goes on.
func TestUpstreamFetchesAreBounded(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	root.UpstreamFetches = limits.NewSlots("upstream fetches", 1)
	other := ProjectName("group/other")
	if _, err := root.Stage(t.Context(), other, MirrorConfig{Upstream: u.URL()}); err != nil {
		t.Fatal(err)
	}
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	u.Stall()
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { firstErr = root.FetchStaged(t.Context(), name, up, CloneRefspecs()) })
	waitStalled(t, u)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := root.FetchStaged(ctx, other, up, CloneRefspecs())
	cancel()
	var busy *limits.BusyError
	if !errors.As(err, &busy) {
		t.Errorf("a second clone beyond the bound: %v", err)
	}
	t.Logf("second clone: %v", err)

	// A mirror in place, fetched through the Fetcher: the caller is told
	// the service was busy, not that the upstream did not answer.
	testdata.NewBareRepo(t, root.Dir, "group/live")
	f := &Fetcher{Root: root, Timeout: time.Minute}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	err = f.Fetch(ctx, filepath.Join(root.Dir, "group", "live.git"), up, []string{"+refs/heads/main:refs/heads/main"})
	cancel()
	if !errors.As(err, &busy) {
		t.Errorf("a mirror's fetch beyond the bound: %v", err)
	}
	t.Logf("mirror fetch: %v", err)
	if n := u.Stalled(); n != 1 {
		t.Errorf("%d requests reached the upstream at once, want 1", n)
	}
	u.Release()
	wg.Wait()
	if firstErr != nil {
		t.Errorf("the first clone: %v", firstErr)
	}
}

// TestMergeConflictListIsCapped: a merge conflicting in 300 files names
// the first MaxConflictPaths and counts them all.
func TestMergeConflictListIsCapped(t *testing.T) {
	f := newMergeFixture(t)
	mainFiles, featureFiles := map[string]string{}, map[string]string{}
	for i := range 300 {
		p := fmt.Sprintf("dir/file%04d.txt", i)
		mainFiles[p], featureFiles[p] = "main\n", "feature\n"
	}
	f.git.Commit(t, "main", mainFiles, "main")
	f.git.Commit(t, "feature", featureFiles, "feature")
	_, err := f.repo.Merge(t.Context(), MergeSpec{Source: f.head(t, "feature"), Target: f.head(t, "main"), Mode: MergeModeMerge})
	var conflict *MergeConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Merge = %v", err)
	}
	t.Logf("%d paths named, %d in all, message of %d bytes", len(conflict.Paths), conflict.Total, len(err.Error()))
	if len(conflict.Paths) != MaxConflictPaths || conflict.Total != 300 || conflict.Paths[0] != "dir/file0000.txt" ||
		!strings.HasSuffix(err.Error(), "and 200 more (300 in all)") {
		t.Errorf("%d paths, total %d, message ending %q", len(conflict.Paths), conflict.Total, err.Error()[max(0, len(err.Error())-60):])
	}
}
