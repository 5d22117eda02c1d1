package gitops

import "fmt"

// UpstreamUnavailableError is an upstream that could not be reached or did
// not answer in time. Nothing was written; it is transient.
type UpstreamUnavailableError struct {
	Upstream string // the URL, which never holds credentials
	Reason   string
	Err      error
}

func (e *UpstreamUnavailableError) Error() string {
	return fmt.Sprintf("upstream %s unavailable: %s", e.Upstream, e.Reason)
}

func (e *UpstreamUnavailableError) Unwrap() error { return e.Err }

// Transient marks the error as safe to retry.
func (e *UpstreamUnavailableError) Transient() bool { return true }

// UpstreamRejectedError is an upstream that answered but refused: wrong or
// missing credentials, or no such repository. Retrying changes nothing
// until someone fixes the credentials or the URL.
type UpstreamRejectedError struct {
	Upstream string
	Reason   string
	Err      error
}

func (e *UpstreamRejectedError) Error() string {
	return fmt.Sprintf("upstream %s refused: %s", e.Upstream, e.Reason)
}

func (e *UpstreamRejectedError) Unwrap() error { return e.Err }

// UpstreamRedirectError is an upstream that answered with a redirect, which
// git was told not to follow: where it points was never checked against
// the service's upstream policy. Nothing was written.
type UpstreamRedirectError struct {
	Upstream string
	Err      error
}

func (e *UpstreamRedirectError) Error() string {
	return fmt.Sprintf("upstream %s redirects elsewhere; redirects are not followed", e.Upstream)
}

func (e *UpstreamRedirectError) Unwrap() error { return e.Err }

// UpstreamRefNotFoundError is a ref (or an object asked for by SHA) that the
// upstream does not have.
type UpstreamRefNotFoundError struct {
	Upstream string
	Ref      string // a ref name or a 40-hex SHA
}

func (e *UpstreamRefNotFoundError) Error() string {
	return fmt.Sprintf("upstream %s has no %s", e.Upstream, e.Ref)
}

// InvalidRefspecError is a fetch refspec gitops refuses before git runs: one
// that would write outside a mirror's own refs (refs/pipelines/ is the
// service's alone) or that is not a plain refspec.
type InvalidRefspecError struct {
	Refspec string
	Reason  string
}

func (e *InvalidRefspecError) Error() string {
	return fmt.Sprintf("refusing refspec %q: %s", e.Refspec, e.Reason)
}

// ProjectExistsError is a name already taken where a mirror was to be made
// or published: by a local project (Local) or by another mirror.
type ProjectExistsError struct {
	Project ProjectName
	Local   bool
}

func (e *ProjectExistsError) Error() string {
	if e.Local {
		return fmt.Sprintf("%s is a local project, not a mirror", e.Project)
	}
	return fmt.Sprintf("mirror %s exists already", e.Project)
}

// NotMirrorError is a mirror operation on a local project.
type NotMirrorError struct {
	Project ProjectName
}

func (e *NotMirrorError) Error() string {
	return fmt.Sprintf("%s is a local project, not a mirror", e.Project)
}
