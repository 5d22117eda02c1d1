package mirrors

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/secretfile"
)

// DefaultRetryStep is the first step of a failed mirror's retry pace when
// Projects.RetryStep does not say.
const DefaultRetryStep = 30 * time.Second

// maxRetryStepFactor bounds the doubling steps: at most this many times the
// first step (15 minutes for the default 30 s).
const maxRetryStepFactor = 30

// RetryLaterError is a failure that says how long to wait before asking
// again: a failed mirror's recorded failure, answered without asking the
// upstream while its retry pace holds, a retry that failed just now, or a
// ready mirror's fetch refused while the Fetcher's refusal pace holds
// (gitops.RetryLaterError).
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
	if kind, _, _ := strings.Cut(pi.Failure, ":"); pi.LastAttempt.IsZero() || kind == failureLowDisk || kind == failureBusy || kind == failureLocked {
		// A stop of the service's own paces nothing: the next pin meets
		// the floor (507) or tries again.
		return 0
	}
	return max(pi.LastAttempt.Add(s.retryStep(pi.Attempts)).Sub(now), 0)
}

// credentialsChanged reports whether this mirror's own credential entry
// was written since pi's failed clone read it: it may be the fix, so the
// retry pace starts over. The credentials file's modification time (no
// secret) says whether to look at all; then the entry's keyed digest
// (credentialDigest) is compared with the one the record keeps, so a
// touch of the file, a rotation of another mirror's credential or a
// rewrite of the same content restarts nothing. Both are read from the
// record and the file every replica shares, so every replica sees a fix
// alike. A record without a digest (or no key to make one now) falls back
// to the modification time alone.
func (s *Projects) credentialsChanged(pi gitops.ProjectInfo) bool {
	if pi.Config.Credential == "" {
		return false
	}
	mod := s.Credentials.ModTime()
	if mod.IsZero() || !mod.After(pi.CredentialsModTime) {
		return false
	}
	now := s.credentialDigest(pi.Config.Credential)
	return pi.CredentialDigest == "" || now == "" || now != pi.CredentialDigest
}

// digestKeyFile is the key of the credential digests, in the staging area
// beside the mirrors' records, shared by every replica on the repos root.
const digestKeyFile = ".credential-digest-key"

// credentialDigest is the keyed digest of the credential entry name as the
// credentials file is now; "" when there is no name or no key (logged).
func (s *Projects) credentialDigest(name string) string {
	if name == "" {
		return ""
	}
	key, err := s.digestKey()
	if err != nil {
		s.logger().Warn("no key for the credential digests: a failed mirror's retry pace starts over whenever the credentials file is written", "err", err)
		return ""
	}
	return s.Credentials.Digest(name, key)
}

// digestKey reads the key of the credential digests, creating it when
// there is none (secretfile.Shared: 32 random bytes, mode 0600, created
// only if absent, so replicas starting together agree on one), once per
// process; an error is tried again on the next call.
func (s *Projects) digestKey() ([]byte, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	area := s.Repos.StagingArea()
	if err := os.MkdirAll(area, 0o755); err != nil {
		return nil, err
	}
	secret, _, err := secretfile.Shared(filepath.Join(area, digestKeyFile))
	if err != nil {
		return nil, err
	}
	key, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil {
		key = []byte(secret) // written by hand: its bytes are the key
	}
	s.key = key
	return key, nil
}

// serviceSide reports whether a clone's failure is a stop of the service's
// own (the disk floor, no upstream turn, the staged repository's lock held
// by another clone): nothing reached the upstream, so it is no attempt of
// the retry pace.
func serviceSide(err error) bool {
	return limits.IsLowDisk(err) || isBusy(err) || isLocked(err)
}

// Kinds of a failed clone, as its record keeps them (gitops' Failure:
// kind, a colon, the reason the answer gives).
const (
	failureRejected    = "rejected"
	failureUnavailable = "unavailable"
	failureNotAllowed  = "not_allowed"
	failureLowDisk     = "insufficient_storage" // service-side: no attempt
	failureBusy        = "busy"                 // service-side: no attempt
	failureLocked      = "locked"               // service-side: no attempt
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
	case limits.IsLowDisk(err):
		return failureLowDisk
	case isBusy(err):
		return failureBusy
	case isLocked(err):
		return failureLocked
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
// answer. A clone failed otherwise is a retryable *refs.UnavailableError (a
// stop by the disk floor, for want of an upstream turn or of the staged
// repository's lock is never answered from the record: it sets no pace).
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
