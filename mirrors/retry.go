package mirrors

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
)

// DefaultRetryStep is the first step of a failed mirror's retry pace when
// Projects.RetryStep does not say.
const DefaultRetryStep = 30 * time.Second

// maxRetryStepFactor bounds the doubling steps: at most this many times the
// first step (15 minutes for the default 30 s).
const maxRetryStepFactor = 30

// RetryLaterError is a failure that says how long to wait before asking
// again: a failed mirror's recorded failure, answered without asking the
// upstream while its retry pace holds, or a retry that failed just now.
type RetryLaterError struct {
	Err  error // the failure (*UpstreamRejectedError, *UpstreamUnavailableError, …)
	Wait time.Duration
}

func (e *RetryLaterError) Error() string { return e.Err.Error() }

func (e *RetryLaterError) Unwrap() error { return e.Err }

// retryStep is how long after its last failed clone a failed mirror waits
// before a pin may try again, when attempts clones were tried again since
// its record was set anew: nothing before the first retry (the
// registration's own clone failed, and the contract says a pin tries
// again), then the first step, doubling, up to maxRetryStepFactor times it.
func (s *Projects) retryStep(attempts int) time.Duration {
	if attempts <= 0 {
		return 0
	}
	first := s.RetryStep
	if first <= 0 {
		first = DefaultRetryStep
	}
	step := first
	for i := 1; i < attempts && step < maxRetryStepFactor*first; i++ {
		step *= 2
	}
	return min(step, maxRetryStepFactor*first)
}

// retryWait is how long a pin must still wait before it may try pi's
// failed clone again; zero: now. It is read from the mirror's record, so
// every replica sharing the repos root keeps the same pace.
func (s *Projects) retryWait(pi gitops.ProjectInfo, now time.Time) time.Duration {
	if pi.LastAttempt.IsZero() {
		return 0
	}
	return max(pi.LastAttempt.Add(s.retryStep(pi.Attempts)).Sub(now), 0)
}

// credentialPrint identifies the credential cfg names as the credentials
// file has it now ("" for none), to tell whether it changed since a clone
// used it. It is kept in memory only: a digest of a secret is never
// written anywhere.
func (s *Projects) credentialPrint(p refs.Project, cfg gitops.MirrorConfig) string {
	if cfg.Credential == "" {
		return ""
	}
	cred, ok, _, _ := s.Credentials.Lookup(cfg.Credential, cfg.Upstream, p)
	if !ok {
		return "absent"
	}
	sum := sha256.Sum256([]byte(cred.Username + "\x00" + cred.Password))
	return string(sum[:])
}

// noteCredentialLocked remembers the credential a clone of p starts with (under
// s.mu).
func (s *Projects) noteCredentialLocked(p refs.Project, fp string) {
	if s.clonedWith == nil {
		s.clonedWith = make(map[refs.Project]string)
	}
	s.clonedWith[p] = fp
}

// credentialChanged reports whether the credential of p's record is not
// the one this process last cloned p with (or first saw it failed with):
// the credentials file was fixed, so the retry pace starts over. A mirror
// this process knows nothing of yet only starts being watched: the pace
// another replica recorded holds.
func (s *Projects) credentialChanged(p refs.Project, cfg gitops.MirrorConfig) bool {
	fp := s.credentialPrint(p, cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	seen, ok := s.clonedWith[p]
	if !ok {
		s.noteCredentialLocked(p, fp)
		return false
	}
	return seen != fp
}

// forgetCredential drops what noteCredentialLocked kept of p: it is deleted or
// in place.
func (s *Projects) forgetCredential(p refs.Project) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clonedWith, p)
}

// Kinds of a failed clone, as its record keeps them (gitops' Failure:
// kind, a colon, the reason the answer gives).
const (
	failureRejected    = "rejected"
	failureUnavailable = "unavailable"
	failureNotAllowed  = "not_allowed"
	failureOther       = "other"
)

// failureOf is what a failed clone's record keeps of err, for the pins that
// answer it while the retry pace holds (recordedFailure).
func failureOf(err error) string {
	var (
		rejected *UpstreamRejectedError
		unavail  *UpstreamUnavailableError
		refused  *UpstreamNotAllowedError
	)
	switch {
	case errors.As(err, &refused):
		return failureNotAllowed
	case errors.As(err, &rejected):
		return failureRejected + ":" + rejected.Reason
	case errors.As(err, &unavail):
		return failureUnavailable + ":" + unavail.Reason
	}
	return failureOther
}

// recordedFailure is the error a failed clone of p gave, rebuilt from its
// record: the same type, so the same status and code as the clone's own
// answer. A clone stopped by the disk floor, or failed otherwise, is a
// retryable *refs.UnavailableError.
func recordedFailure(p refs.Project, pi gitops.ProjectInfo) error {
	kind, reason, _ := strings.Cut(pi.Failure, ":")
	switch kind {
	case failureRejected:
		return &UpstreamRejectedError{Project: p, Reason: reason}
	case failureUnavailable:
		return &UpstreamUnavailableError{Project: p, Reason: reason}
	case failureNotAllowed:
		return &UpstreamNotAllowedError{Upstream: pi.Config.Upstream, Detail: "refused when the clone was last tried"}
	}
	return &refs.UnavailableError{Op: "pinning", Cause: fmt.Errorf("the mirror's clone failed: %s", pi.LastError)}
}
