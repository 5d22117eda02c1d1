package gitops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeLock creates a ref lock file as a git writer would, aged by age.
func writeLock(tb testing.TB, path string, age time.Duration) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(path, at, at); err != nil {
		tb.Fatal(err)
	}
}

// holdFlock takes an exclusive flock on path, as another replica's cleaner
// would, and returns what releases it.
func holdFlock(tb testing.TB, path string) (release func()) {
	tb.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	return func() { _ = fh.Close() }
}

// awaitFlockWaiter returns once the kernel lists a process blocked on the
// flock of path (/proc/locks shows waiters with "->"), or fails the test if
// done closes first. It reads kernel state, it does not guess a delay.
func awaitFlockWaiter(tb testing.TB, path string, done <-chan struct{}) {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	inode := fmt.Sprintf(":%d ", fi.Sys().(*syscall.Stat_t).Ino)
	if _, err := os.ReadFile("/proc/locks"); err != nil {
		tb.Skipf("cannot see flock waiters: %v", err)
	}
	deadline := time.Now().Add(time.Minute) // a hang guard, not a synchronisation
	for time.Now().Before(deadline) {
		select {
		case <-done:
			tb.Fatal("the cleaner finished without waiting for the cleanup flock")
		default:
		}
		locks, _ := os.ReadFile("/proc/locks")
		for line := range strings.Lines(string(locks)) {
			if strings.Contains(line, "-> FLOCK") && strings.Contains(line, inode) {
				return
			}
		}
		runtime.Gosched()
	}
	tb.Fatal("no cleaner blocked on the cleanup flock")
}

// TestStaleLockRecheckedUnderFlock is the race the flock closes: cleaner A
// finds a stale lock; before it removes it, cleaner B (holding the flock)
// removes it and a live git takes a fresh lock at the same path. A must
// leave the fresh lock alone.
func TestStaleLockRecheckedUnderFlock(t *testing.T) {
	f := newFixture(t)
	f.root.StaleLockAge = time.Minute
	lock := f.repo.lockPath(PipelineRef(8))
	writeLock(t, lock, 2*time.Minute)
	flock := filepath.Join(f.repo.Dir(), cleanupLockName)
	release := holdFlock(t, flock) // cleaner B

	done := make(chan struct{})
	var removed bool
	go func() { // cleaner A, another replica: its own Root
		defer close(done)
		other := &Root{Dir: f.root.Dir, StaleLockAge: time.Minute}
		defer other.Close()
		repo, err := other.Open(f.project)
		if err != nil {
			t.Error(err)
			return
		}
		removed = repo.clearIfStale(lock)
	}()
	awaitFlockWaiter(t, flock, done) // A judged the lock stale and waits

	// B clears the stale lock; a live git takes a fresh one.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	writeLock(t, lock, 0)
	fresh, err := os.Lstat(lock)
	if err != nil {
		t.Fatal(err)
	}
	release()
	<-done

	if removed {
		t.Error("clearIfStale reported removing a lock")
	}
	now, err := os.Lstat(lock)
	if err != nil {
		t.Fatalf("the live git's fresh lock was removed: %v", err)
	}
	if !os.SameFile(fresh, now) {
		t.Fatal("the live git's fresh lock was replaced")
	}
}

// TestStaleLockClearedOnceByManyCleaners: replicas finding the same stale
// locks together remove each exactly once, leave live locks alone, and leave
// nothing behind that git would see.
func TestStaleLockClearedOnceByManyCleaners(t *testing.T) {
	f := newFixture(t)
	f.root.StaleLockAge = time.Minute
	stale := []RefName{PipelineRef(1), PipelineRef(2)}
	for _, ref := range stale {
		writeLock(t, f.repo.lockPath(ref), 2*time.Minute)
	}
	writeLock(t, f.repo.lockPath(""), 2*time.Minute) // packed-refs.lock
	live := f.repo.lockPath(PipelineRef(3))
	writeLock(t, live, 0)

	const cleaners = 8
	counts := make([]int, cleaners)
	var wg sync.WaitGroup
	for i := range cleaners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := &Root{Dir: f.root.Dir, StaleLockAge: time.Minute}
			defer root.Close()
			repo, err := root.Open(f.project)
			if err != nil {
				t.Error(err)
				return
			}
			counts[i] = repo.clearStaleLocks(append(stale, PipelineRef(3)), true)
		}()
	}
	wg.Wait()

	total := 0
	for _, n := range counts {
		total += n
	}
	if total != len(stale)+1 {
		t.Errorf("cleaners removed %d locks in all (%v), want %d", total, counts, len(stale)+1)
	}
	for _, ref := range stale {
		if _, err := os.Lstat(f.repo.lockPath(ref)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale lock of %s still there: %v", ref, err)
		}
	}
	if _, err := os.Lstat(f.repo.lockPath("")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale packed-refs.lock still there: %v", err)
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("live lock removed: %v", err)
	}
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	// Nothing under refs/ but what git wrote: no moved-aside locks, no flock
	// file; git lists exactly the refs it had.
	err := filepath.WalkDir(filepath.Join(f.repo.Dir(), "refs"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(path, filepath.Join(f.repo.Dir(), "refs", "heads")) {
			t.Errorf("left under refs/: %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := f.git.Git(t, "for-each-ref", "--format=%(refname)"); out != "refs/heads/main" {
		t.Errorf("git lists %q, want only refs/heads/main", out)
	}
	leftovers, _ := filepath.Glob(filepath.Join(f.repo.Dir(), "refkeeper-stale-lock-*"))
	if len(leftovers) > 0 {
		t.Errorf("moved-aside locks left: %v", leftovers)
	}
}

// TestCreateBehindStaleLockFromManyReplicas: replicas pinning the same ref
// behind a crashed writer's lock clear it together; exactly one creates the
// ref, every other call sees it there or fails transiently, and no lock is
// left.
func TestCreateBehindStaleLockFromManyReplicas(t *testing.T) {
	f := newFixture(t)
	ref := PipelineRef(42)
	writeLock(t, f.repo.lockPath(ref), 2*time.Minute)
	const replicas = 8
	created := make([]bool, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := &Root{Dir: f.root.Dir, StaleLockAge: time.Minute, LockTimeout: 500 * time.Millisecond}
			defer root.Close()
			repo, err := root.Open(f.project)
			if err != nil {
				errs[i] = err
				return
			}
			created[i], errs[i] = repo.Create(t.Context(), ref, f.c1)
		}()
	}
	wg.Wait()
	winners := 0
	for i := range replicas {
		// A replica whose git failed on the stale lock, while another
		// cleared it, may give up for now with a transient error: its
		// caller retries.
		if errs[i] != nil && !IsTransient(errs[i]) {
			t.Errorf("replica %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d replicas created the ref, want 1", winners)
	}
	if sha, ok := f.git.RefSHA(t, string(ref)); !ok || sha != string(f.c1) {
		t.Fatalf("ref at %q (exists: %v), want %s", sha, ok, f.c1)
	}
	if _, err := os.Lstat(f.repo.lockPath(ref)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock left: %v", err)
	}
}
