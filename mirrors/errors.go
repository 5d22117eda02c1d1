package mirrors

import (
	"errors"
	"fmt"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/refs"
)

// ProjectConflictError is a mirror registered over a local project, or a
// local project asked to be deleted. Nothing changed.
type ProjectConflictError struct {
	Project refs.Project
	Reason  string
}

func (e *ProjectConflictError) Error() string { return fmt.Sprintf("%s %s", e.Project, e.Reason) }

// UpstreamUnavailableError is an upstream that could not be reached or did
// not answer within the upstream timeout. Nothing was written; retrying
// later is safe.
type UpstreamUnavailableError struct {
	Project refs.Project
	Reason  string
	Cause   error
}

func (e *UpstreamUnavailableError) Error() string {
	return fmt.Sprintf("the upstream of %s is unavailable: %s", e.Project, e.Reason)
}

func (e *UpstreamUnavailableError) Unwrap() error { return e.Cause }

// UpstreamRejectedError is an upstream that refused the credentials or has
// no such repository. Nothing was written; retrying will not help until the
// credentials or the URL are fixed.
type UpstreamRejectedError struct {
	Project refs.Project
	Reason  string
	Cause   error
}

func (e *UpstreamRejectedError) Error() string {
	return fmt.Sprintf("the upstream of %s refused: %s", e.Project, e.Reason)
}

func (e *UpstreamRejectedError) Unwrap() error { return e.Cause }

// UpstreamRefNotFoundError is a ref (or a SHA) that exists neither in the
// mirror nor upstream.
type UpstreamRefNotFoundError struct {
	Project refs.Project
	Ref     string
}

func (e *UpstreamRefNotFoundError) Error() string {
	return fmt.Sprintf("%s exists neither in %s nor upstream", e.Ref, e.Project)
}

// CloneLockedError is a clone that waited its whole clone timeout for the
// staged repository's lock (gitops.Root.LockStagedFetch), held by another
// clone that did not end, here or on another replica. Nothing reached the
// upstream: a stop of the service's own, no attempt of the retry pace.
type CloneLockedError struct {
	Project refs.Project
	Waited  time.Duration
	Cause   error
}

func (e *CloneLockedError) Error() string {
	return fmt.Sprintf("the clone of %s was not started: an earlier clone of this mirror did not stop within %s", e.Project, e.Waited)
}

func (e *CloneLockedError) Unwrap() error { return e.Cause }

func isLocked(err error) bool {
	var locked *CloneLockedError
	return errors.As(err, &locked)
}

func isBusy(err error) bool {
	var busy *limits.BusyError
	return errors.As(err, &busy)
}

// upstreamError turns gitops' fetch failures into the domain's (within a
// refusal's pace, a *RetryLaterError); other errors go through
// refs.Unavailable.
func upstreamError(p refs.Project, op string, err error) error {
	if later := (*gitops.RetryLaterError)(nil); errors.As(err, &later) {
		return &RetryLaterError{Err: upstreamError(p, op, later.Err), Wait: later.Wait}
	}
	var (
		unavail  *gitops.UpstreamUnavailableError
		rejected *gitops.UpstreamRejectedError
		missing  *gitops.UpstreamRefNotFoundError
		redirect *gitops.UpstreamRedirectError
	)
	switch {
	case err == nil:
		return nil
	case limits.IsLowDisk(err), isBusy(err):
		// 507 and 503 unavailable: the service's own bounds, not the
		// upstream's answer; nothing was written, retrying is safe.
		return &refs.UnavailableError{Op: op, Cause: err}
	case errors.As(err, &redirect):
		return &UpstreamNotAllowedError{Upstream: redirect.Upstream, Detail: "answered with a redirect"}
	case errors.As(err, &unavail):
		return &UpstreamUnavailableError{Project: p, Reason: unavail.Reason, Cause: err}
	case errors.As(err, &rejected):
		return &UpstreamRejectedError{Project: p, Reason: rejected.Reason, Cause: err}
	case errors.As(err, &missing):
		return &UpstreamRefNotFoundError{Project: p, Ref: missing.Ref}
	}
	return refs.Unavailable(op, err)
}
