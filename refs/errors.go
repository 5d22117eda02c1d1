package refs

import (
	"errors"
	"fmt"

	"github.com/refkeeper/refkeeper/gitops"
)

// InvalidInputError is a request value that is not well formed.
type InvalidInputError struct {
	Field  string
	Reason string
}

func (e *InvalidInputError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// ProjectNotFoundError is a project with no bare repository.
type ProjectNotFoundError struct{ Project Project }

func (e *ProjectNotFoundError) Error() string { return fmt.Sprintf("project %s not found", e.Project) }

// PinNotFoundError is a pipeline with no pin (and, for a delete, no ref).
type PinNotFoundError struct {
	Project    Project
	PipelineID PipelineID
}

func (e *PinNotFoundError) Error() string {
	return fmt.Sprintf("no pin for pipeline %d in %s", e.PipelineID, e.Project)
}

// RefConflictError is a pipeline ref (or its pin) that already points at
// another SHA than requested. Nothing changed.
type RefConflictError struct {
	Ref       gitops.RefName
	Pinned    ObjectID
	Requested ObjectID
}

func (e *RefConflictError) Error() string {
	return fmt.Sprintf("%s is pinned to %s, not %s", e.Ref, e.Pinned, e.Requested)
}

// CommitNotFoundError is a SHA that is not a commit in the repository.
type CommitNotFoundError struct {
	SHA    ObjectID
	Reason string // "does not exist", "is a tree", ...
}

func (e *CommitNotFoundError) Error() string {
	return fmt.Sprintf("%s is not a commit in this repository: %s", e.SHA, e.Reason)
}

// MergeRefNotFoundError is a pin by merge request whose merge ref is absent.
type MergeRefNotFoundError struct {
	Ref gitops.RefName
}

func (e *MergeRefNotFoundError) Error() string { return fmt.Sprintf("%s does not exist", e.Ref) }

// RefNotFoundError is a source or target ref of a computed merge that does
// not exist.
type RefNotFoundError struct {
	Ref gitops.RefName
}

func (e *RefNotFoundError) Error() string { return fmt.Sprintf("%s does not exist", e.Ref) }

// MergeConflictError is a computed merge git cannot make cleanly: Paths are
// the first gitops.MaxConflictPaths conflicting paths and Total how many
// there are; Reason says why when it is not about paths (no common
// ancestor). Nothing was written.
type MergeConflictError struct {
	Source, Target ObjectID
	Paths          []string
	Total          int
	Reason         string
}

func (e *MergeConflictError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("cannot merge %s into %s: %s", e.Source, e.Target, e.Reason)
	}
	return fmt.Sprintf("merging %s into %s conflicts in %s", e.Source, e.Target, gitops.ListConflicts(e.Paths, e.Total))
}

// UnavailableError is a transient failure (Redis unreachable, a git lock held
// too long, a git process that failed): nothing was changed, and retrying
// later is safe.
type UnavailableError struct {
	Op    string
	Cause error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s: temporarily unavailable: %v", e.Op, e.Cause)
}

func (e *UnavailableError) Unwrap() error { return e.Cause }

// IsUnavailable reports whether err is transient.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// Unavailable wraps a store or git failure that is worth retrying as
// *UnavailableError, saying what was being done (op); other errors pass
// through, wrapped with op.
func Unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	var u *UnavailableError
	if errors.As(err, &u) {
		return err
	}
	if isStoreError(err) || gitops.IsTransient(err) {
		return &UnavailableError{Op: op, Cause: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// FromGit turns gitops' errors about project p and its objects into the
// domain's, the one place that does: no such project (or a name gitops
// refuses) is *ProjectNotFoundError, no such object or an object that is no
// commit *CommitNotFoundError; anything else goes through Unavailable as op.
func FromGit(p Project, op string, err error) error {
	var (
		noProject *gitops.ProjectNotFoundError
		invalid   *gitops.InvalidNameError
		noObject  *gitops.ObjectNotFoundError
		notCommit *gitops.NotCommitError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &noProject), errors.As(err, &invalid):
		return &ProjectNotFoundError{Project: p}
	case errors.As(err, &noObject):
		return &CommitNotFoundError{SHA: noObject.ID, Reason: "no such object"}
	case errors.As(err, &notCommit):
		return &CommitNotFoundError{SHA: notCommit.ID, Reason: "it is a " + notCommit.Type}
	}
	return Unavailable(op, err)
}

// IsProjectNotFound reports whether err says the project does not exist,
// in gitops' terms or the domain's.
func IsProjectNotFound(err error) bool {
	var nf *ProjectNotFoundError
	var gnf *gitops.ProjectNotFoundError
	return errors.As(err, &nf) || errors.As(err, &gnf)
}

// ErrMirrorCloning is why a pin on a mirror whose first clone has not
// succeeded is unavailable: the repository is not there yet (the cause of
// an *UnavailableError; errors.Is finds it).
var ErrMirrorCloning = errors.New("the mirror's first clone has not succeeded yet")
