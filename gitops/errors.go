package gitops

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// errBadID is returned by ParseDecimalID; callers wrap it with what the id was.
var errBadID = errors.New("must be a decimal integer from 1 to 9223372036854775807 without sign or leading zero")

// InvalidNameError is a project name, object id or ref that is not well formed.
type InvalidNameError struct {
	Kind   string // "project name", "sha", "ref"
	Value  string
	Reason string
}

func (e *InvalidNameError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Kind, e.Value, e.Reason)
}

// ProjectNotFoundError is a valid project name with no bare repository behind
// it (or one that resolves outside the root).
type ProjectNotFoundError struct {
	Project ProjectName
}

func (e *ProjectNotFoundError) Error() string {
	return fmt.Sprintf("project %s not found", e.Project)
}

// ObjectNotFoundError is an object id the repository does not have.
type ObjectNotFoundError struct {
	ID ObjectID
}

func (e *ObjectNotFoundError) Error() string {
	return fmt.Sprintf("object %s not found", e.ID)
}

// NotCommitError is an object that exists but is not a commit (a tree, a blob
// or an annotated tag).
type NotCommitError struct {
	ID   ObjectID
	Type string
}

func (e *NotCommitError) Error() string {
	return fmt.Sprintf("object %s is a %s, not a commit", e.ID, e.Type)
}

// RefNotFoundError is a ref that does not exist.
type RefNotFoundError struct {
	Ref RefName
}

func (e *RefNotFoundError) Error() string {
	return fmt.Sprintf("%s does not exist", e.Ref)
}

// MergeConflictError is a computed merge whose source and target change the
// same lines or paths; Paths are the first MaxConflictPaths conflicted
// paths, as git names them, and Total how many there are in all.
type MergeConflictError struct {
	Source, Target ObjectID
	Paths          []string
	Total          int
}

func (e *MergeConflictError) Error() string {
	return fmt.Sprintf("merging %s into %s conflicts in %s", e.Source, e.Target, ListConflicts(e.Paths, e.Total))
}

// MaxConflictPaths is how many conflicted paths a merge conflict names: a
// merge conflicting in thousands of files is answered (and remembered for
// a webhook's redeliveries) in a few KiB, with the total count.
const MaxConflictPaths = 100

// ListConflicts writes conflicted paths for a message: those given, and
// how many more there are when total is larger.
func ListConflicts(paths []string, total int) string {
	s := strings.Join(paths, ", ")
	if more := total - len(paths); more > 0 {
		s += fmt.Sprintf(" and %d more (%d in all)", more, total)
	}
	return s
}

// UnrelatedHistoriesError is a computed merge of two commits with no common
// ancestor, which git refuses to merge.
type UnrelatedHistoriesError struct {
	Source, Target ObjectID
}

func (e *UnrelatedHistoriesError) Error() string {
	return fmt.Sprintf("%s and %s have no common ancestor", e.Source, e.Target)
}

// MismatchingStateError is a ref whose value under the lock was not the one
// the caller expected: a create found the ref at another object, or a
// compare-and-delete found it moved. Actual is empty when the ref is absent.
type MismatchingStateError struct {
	Ref      RefName
	Expected ObjectID
	Actual   ObjectID
}

func (e *MismatchingStateError) Error() string {
	if e.Actual == "" {
		return fmt.Sprintf("%s is absent, expected %s", e.Ref, e.Expected)
	}
	return fmt.Sprintf("%s is at %s, expected %s", e.Ref, e.Actual, e.Expected)
}

// ForbiddenRefError is a write outside refs/pipelines/, refused before git runs.
type ForbiddenRefError struct {
	Ref RefName
}

func (e *ForbiddenRefError) Error() string {
	return fmt.Sprintf("refusing to write %s: only refs under %s are written", e.Ref, PipelineRefPrefix)
}

// LockedError is a lock file held by another writer for longer than the lock
// timeout. It is transient: the caller may retry later. Ref is the ref whose
// lock it is, empty for packed-refs.lock or when git did not say.
type LockedError struct {
	Ref  RefName
	Path string
}

func (e *LockedError) Error() string { return fmt.Sprintf("%s is locked by another writer", e.Path) }

// Transient marks the error as safe to retry.
func (e *LockedError) Transient() bool { return true }

// CommandError is a git command that failed for a reason gitops could not
// attribute to the state of a ref (a full disk, a broken repository). It is
// treated as transient: nothing was changed, and a retry may succeed.
type CommandError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("git %v: %v: %s", e.Args, e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Transient marks the error as safe to retry.
func (e *CommandError) Transient() bool { return true }

// TimeoutError is a git process that ran past the Root's GitTimeout and was
// ended (SIGTERM, then SIGKILL). It is transient: git removes its lock files
// on SIGTERM, and a killed one leaves them to turn stale.
type TimeoutError struct {
	Args  []string
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("git %v ran past its timeout of %s and was ended", e.Args, e.Limit)
}

// Transient marks the error as safe to retry.
func (e *TimeoutError) Transient() bool { return true }

// InvalidUpdateError is an update an Updater refuses before git sees it: a
// ref twice in one transaction, or neither a new nor an old value.
type InvalidUpdateError struct {
	Ref    RefName
	Reason string
}

func (e *InvalidUpdateError) Error() string {
	return fmt.Sprintf("invalid update of %s: %s", e.Ref, e.Reason)
}

// UpdaterStateError is an Updater call out of its legal order (see
// Updater), or any call after its process ended; Err is then why it ended.
// Nothing was sent to git.
type UpdaterStateError struct {
	Call  string
	State string
	Err   error
}

func (e *UpdaterStateError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("updater %s after its git ended: %v", e.Call, e.Err)
	}
	return fmt.Sprintf("updater %s called while %s", e.Call, e.State)
}

func (e *UpdaterStateError) Unwrap() error { return e.Err }

// DiskFullError is a git write that failed while the repository's file
// system had no space left. Nothing was changed; it is transient.
type DiskFullError struct {
	Dir string
	Err error
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("no space left on the disk of %s: %v", e.Dir, e.Err)
}

func (e *DiskFullError) Unwrap() error { return e.Err }

// Transient marks the error as safe to retry.
func (e *DiskFullError) Transient() bool { return true }

// StorageError is a repository that could not be read for a reason other
// than its absence: an I/O error, too many open files, a permission, a
// damaged file. It is an operational failure, not a bad request, so it is
// treated as transient: retried, and answered as "unavailable".
type StorageError struct {
	Op  string
	Err error
}

func (e *StorageError) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }
func (e *StorageError) Unwrap() error { return e.Err }

// Transient marks the error as safe to retry.
func (e *StorageError) Transient() bool { return true }

// IsTransient reports whether err is a failure that may pass by itself (a
// held lock, a failed git process, an I/O error), as opposed to one that
// retrying cannot fix.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}
