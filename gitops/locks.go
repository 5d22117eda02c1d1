package gitops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockPath is the lock file git takes for a ref, or for packed-refs when ref
// is empty.
func (r *Repo) lockPath(ref RefName) string {
	if ref == "" {
		return filepath.Join(r.dir, "packed-refs.lock")
	}
	return filepath.Join(r.dir, filepath.FromSlash(string(ref))+".lock")
}

// heldLock returns the lock file of ref (or of packed-refs when packed is
// true) if one exists now, else "".
func (r *Repo) heldLock(ref RefName, packed bool) string {
	path := r.lockPath(ref)
	if packed {
		path = r.lockPath("")
	}
	if _, err := os.Lstat(path); err == nil {
		return path
	}
	return ""
}

// waitUnlocked waits, up to the lock timeout, for ref's lock file to go, and
// answers its path if it is still there. Like git's own wait for a lock, it
// polls with a growing pause: a lock is held for milliseconds. It stops
// early with ctx's error when ctx ends.
func (r *Repo) waitUnlocked(ctx context.Context, ref RefName) (string, error) {
	deadline := time.Now().Add(r.root.lockTimeout())
	pause := time.Millisecond
	for {
		lock := r.heldLock(ref, false)
		if lock == "" || time.Now().After(deadline) {
			return lock, nil
		}
		select {
		case <-ctx.Done():
			return lock, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// clearStaleLocks removes the lock files of refs (and of packed-refs, when
// packed is true) that are older than the stale age: what a git process that
// crashed mid-transaction leaves behind. libgit2 and git never remove them,
// so without this one crash would block the ref forever. It answers how
// many it removed.
func (r *Repo) clearStaleLocks(refs []RefName, packed bool) int {
	removed := 0
	for _, ref := range refs {
		if r.clearIfStale(r.lockPath(ref)) {
			removed++
		}
	}
	if packed && r.clearIfStale(r.lockPath("")) {
		removed++
	}
	return removed
}

// cleanupLockName is the file, in the repository's top directory, whose
// flock serialises the removal of stale lock files among every process that
// shares the repos root. It is outside refs/, so git never takes it for a
// ref, and git has no file of that name.
const cleanupLockName = "refkeeper-locks.flock"

// clearIfStale removes path if it is older than the stale age, and reports
// whether it removed it.
//
// Two processes may both find the same stale lock. Judging it stale and
// removing it are two steps, so without more care the slower one could remove
// a fresh lock that a live git took after the faster one cleared the stale
// one: that git would then write its ref unprotected, or fail to commit.
// git's own lock files cannot order the cleaners (taking one is what a live
// git does), so the cleaners take an flock of their own, one per repository,
// and judge again while holding it: a lock that is still there and still old
// then cannot be one that a live git took meanwhile, since git only takes a
// lock that does not exist. The flock is taken only for a lock that looked
// stale, which is rare, and is held for a few system calls; the kernel drops
// it if the process dies.
//
// Under the flock the lock is still moved aside (atomic rename) and removed
// only if what was moved is the file judged stale, else linked back: it
// guards against a git that held its lock past the stale age and committed
// just then, after which another git may have taken a fresh one.
func (r *Repo) clearIfStale(path string) bool {
	if !r.isStale(path) {
		return false
	}
	unlock, err := r.lockCleanup()
	if err != nil {
		r.root.logger().Warn("not removing stale lock file", "project", r.name, "path", path, "err", err)
		return false
	}
	defer unlock()
	before, err := os.Lstat(path)
	if err != nil || time.Since(before.ModTime()) < r.root.staleLockAge() {
		return false // another process cleared it; any lock there now is live
	}
	// Moved to the top directory, not beside the lock: a file left inside
	// refs/ by a crash just after the rename would look like a broken ref.
	moved := filepath.Join(r.dir, fmt.Sprintf("refkeeper-stale-lock-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Rename(path, moved); err != nil {
		return false // gone since the check: its git was alive after all
	}
	after, err := os.Lstat(moved)
	if err == nil && !os.SameFile(before, after) {
		// A live writer's lock: give it back (Link fails if a newer one exists).
		_ = os.Link(moved, path)
		_ = os.Remove(moved)
		return false
	}
	_ = os.Remove(moved)
	r.root.logger().Warn("removed stale lock file",
		"project", r.name, "path", path, "age", time.Since(before.ModTime()).Round(time.Second).String())
	return true
}

// isStale reports whether path exists and is older than the stale age.
func (r *Repo) isStale(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && time.Since(fi.ModTime()) >= r.root.staleLockAge()
}

// lockCleanup takes the repository's cleanup flock, waiting for another
// holder, and returns what releases it.
func (r *Repo) lockCleanup() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(r.dir, cleanupLockName), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("opening cleanup lock: %w", err)
	}
	fd := int(f.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("taking cleanup lock: %w", err)
	}
	return func() {
		// Unlock before closing: a child forked meanwhile holds a copy of
		// the descriptor until it execs, which would keep the flock.
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
