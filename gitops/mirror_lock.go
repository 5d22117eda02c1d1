package gitops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// mirrorLockDir holds one lock file per mirror name, in the staging area
// (a dot-name no listing shows). The files stay when a mirror is deleted:
// removing a flock's file while another process waits on it would let two
// holders in (each on a file of its own).
const mirrorLockDir = ".locks"

// mirrorLockWait bounds the wait for a mirror's lock: its holders keep it
// for a config rewrite, a `git init` or a rename, so one held longer
// belongs to a process that hangs, and the caller gets a retryable error.
const mirrorLockWait = 10 * time.Second

// mirrorLockPoll is how often a waiter asks for a held mirror lock again;
// holders keep it for a config rewrite or a rename, a few milliseconds.
const mirrorLockPoll = 5 * time.Millisecond

// LockMirror takes the lock of mirror name's record: whoever rewrites the
// record (a registration, an update, a clone's outcome), publishes the
// staged mirror or removes it holds it, so two of them never interleave
// their read of the record and their write. It is an flock on a file named
// after the name's digest (stable while the repository moves from the
// staging area into place or away), so it holds across goroutines and
// across processes sharing the repos root. It waits until ctx ends or for
// mirrorLockWait (then *LockedError); the answer releases it.
func (r *Root) LockMirror(ctx context.Context, name ProjectName) (unlock func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, mirrorLockWait)
	defer cancel()
	return r.lockName(ctx, name, ".lock")
}

// LockStagedFetch takes the lock of mirror name's staged repository for
// one first clone: a clone holds it while its git writes into the staged
// repository, so that a clone started anew (a new upstream, a deletion and
// a new registration, a retry) on any replica never writes there alongside
// one that is being stopped. It waits until ctx ends (then *LockedError):
// a clone that was superseded stops within moments, and the one that
// waits is bounded by its own clone timeout. It is not the record's lock
// (LockMirror), which is only ever held for moments.
func (r *Root) LockStagedFetch(ctx context.Context, name ProjectName) (unlock func(), err error) {
	return r.lockName(ctx, name, ".clone")
}

// lockName takes the flock of the file named after name's digest with the
// given suffix, waiting until ctx ends.
func (r *Root) lockName(ctx context.Context, name ProjectName, suffix string) (unlock func(), err error) {
	if _, err := ParseProjectName(string(name)); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.Dir, stagingDirName, mirrorLockDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &StorageError{Op: "making the mirror locks' directory", Err: err}
	}
	sum := sha256.Sum256([]byte(name))
	f, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(sum[:16])+suffix), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &StorageError{Op: "opening the lock of " + string(name), Err: err}
	}
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, &StorageError{Op: "taking the lock of " + string(name), Err: err}
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, &LockedError{Path: f.Name()}
		case <-time.After(mirrorLockPoll):
		}
	}
	return func() {
		// Unlock before closing: a child forked meanwhile holds a copy of
		// the descriptor until it execs, which would keep the flock.
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// Gone reports whether the repository's directory no longer holds a
// repository: it was removed (a mirror's deletion renames it away) after
// this Repo was opened. It reads the disk, not what the Root remembers, so
// it sees a removal by another process too.
func (r *Repo) Gone() bool {
	bare, err := isBareRepo(r.dir)
	return err == nil && !bare
}
