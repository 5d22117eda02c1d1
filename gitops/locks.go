package gitops

import (
	"fmt"
	"os"
	"path/filepath"
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

// clearStaleLocks removes the lock files of refs (and of packed-refs, when
// packed is true) that are older than the stale age: what a git process that
// crashed mid-transaction leaves behind. libgit2 and git never remove them,
// so without this one crash would block the ref forever.
func (r *Repo) clearStaleLocks(refs []RefName, packed bool) {
	for _, ref := range refs {
		r.clearIfStale(r.lockPath(ref))
	}
	if packed {
		r.clearIfStale(r.lockPath(""))
	}
}

// clearIfStale removes path if it is older than the stale age. Two processes
// may both find the same stale lock; a plain remove could then delete a fresh
// lock the faster one's git took in between. So the lock is first renamed to a
// name of our own (atomic), and removed only if what was moved is the file we
// judged stale; otherwise it is linked back.
func (r *Repo) clearIfStale(path string) {
	before, err := os.Lstat(path)
	if err != nil || time.Since(before.ModTime()) < r.root.staleLockAge() {
		return
	}
	moved := fmt.Sprintf("%s.stale-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	if err := os.Rename(path, moved); err != nil {
		return // gone already: another process cleared it
	}
	after, err := os.Lstat(moved)
	if err == nil && !os.SameFile(before, after) {
		// A live writer's lock: give it back (Link fails if a newer one exists).
		_ = os.Link(moved, path)
		_ = os.Remove(moved)
		return
	}
	_ = os.Remove(moved)
	r.root.logger().Warn("removed stale lock file",
		"project", r.name, "path", path, "age", time.Since(before.ModTime()).Round(time.Second).String())
}
