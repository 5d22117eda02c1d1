package mirrors

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/refs"
)

// cloneRefspecs are what a mirror's first fetch takes: its branches and its
// host's merge request refs, each at its own name.
func cloneRefspecs(h refs.HostKind) []string {
	if ns := h.Namespace(); ns != "" {
		return gitops.CloneRefspecs("+" + ns + "*:" + ns + "*")
	}
	return gitops.CloneRefspecs()
}

// ProjectKind says who keeps a project's repository.
type ProjectKind string

// Project kinds.
const (
	KindLocal  ProjectKind = "local"  // something else keeps it; the service only pins
	KindMirror ProjectKind = "mirror" // the service cloned it and fetches into it
)

// ProjectState is where a project is in its life.
type ProjectState string

// Project states. A local project is always ready.
const (
	ProjectCloning ProjectState = "cloning"
	ProjectReady   ProjectState = "ready"
	ProjectFailed  ProjectState = "failed"
)

// ProjectInfo is one project as the API shows it.
type ProjectInfo struct {
	Project    refs.Project
	Kind       ProjectKind
	State      ProjectState
	Upstream   string        // "" for a local project
	Host       refs.HostKind // "" for a local project
	Credential string        // a name in the credentials file, or ""
	FetchedAt  time.Time
	LastError  string
}

// MirrorRequest registers a mirror.
type MirrorRequest struct {
	Project    refs.Project
	Upstream   string
	Host       string // "": generic
	Credential string // "": none
}

// Projects keeps the mirrors: registers and clones them, answers what every
// project is, and deletes mirrors. What a mirror is lives in its own git
// config (see gitops), so losing Redis loses nothing of it; Redis holds only
// the pins' records, which a mirror's deletion removes too. It is safe for
// concurrent use.
type Projects struct {
	Repos   *gitops.Root
	Fetcher *gitops.Fetcher
	Store   *refs.Store
	// Credentials are the named upstream credentials; nil: none.
	Credentials *CredentialFile
	// Policy says which upstreams a mirror may have (--upstream-allow),
	// checked at registration and before every fetch. Nil: the default,
	// DefaultUpstreamAllow.
	Policy *UpstreamPolicy
	// UpstreamTimeout bounds one upstream fetch after the first clone.
	// Zero: gitops.DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// CloneTimeout bounds a mirror's first clone (--clone-timeout), which
	// runs after the registration was answered. Zero: DefaultCloneTimeout.
	CloneTimeout time.Duration
	// DiskFloor is the free space the repos root keeps: below it a new
	// mirror (or a failed one registered again) is refused with
	// *limits.LowDiskError before anything is written. The fetches
	// themselves are held to it by gitops.Root.DiskFloor. Nil: no floor.
	DiskFloor *limits.DiskFloor
	// RetryStep paces the pins that try a failed mirror's clone again: at
	// most one retry per step, the step doubling after each failed retry
	// up to 30 times this; meanwhile a pin answers the recorded failure.
	// Zero: DefaultRetryStep (30 s, so 15 min at most).
	RetryStep time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger

	records refs.Cache[refs.Project, gitops.ProjectInfo] // what pins read of the record
	mu      sync.Mutex
	cloning map[refs.Project]*cloneRun // clones this process runs
	keyMu   sync.Mutex
	key     []byte // of the credential digests, once read (digestKey)
	closed  bool
	wg      sync.WaitGroup
}

// cloneRun is a first clone this process runs: one start of it, named by
// the generation that start wrote into the mirror's record.
type cloneRun struct {
	generation string
	// cancel stops the run; errCloneSuperseded as the cause says its
	// outcome no longer matters (a new start, a deletion).
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error // once done: nil when the mirror was published
}

// errCloneSuperseded is the outcome of a clone whose record no longer
// holds its generation: the mirror was registered again (another upstream,
// host or credential), retried, or deleted since it started. Nothing of it
// is written.
var errCloneSuperseded = errors.New("the clone was superseded: the mirror was registered again, retried or deleted meanwhile")

// generationPoll is how often a running clone reads its mirror's record to
// see whether it was superseded on another replica: it then stops, and the
// clone that superseded it, waiting for the staged repository
// (gitops.Root.LockStagedFetch), goes on.
const generationPoll = time.Second

// newGeneration names one start of a mirror's clone: random, not a secret.
func newGeneration() string { return rand.Text() }

func (s *Projects) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Projects) timeout() time.Duration {
	if s.UpstreamTimeout > 0 {
		return s.UpstreamTimeout
	}
	return gitops.DefaultUpstreamTimeout
}

// DefaultCloneTimeout bounds a mirror's first clone when nothing else says.
const DefaultCloneTimeout = 30 * time.Minute

func (s *Projects) cloneTimeout() time.Duration {
	if s.CloneTimeout > 0 {
		return s.CloneTimeout
	}
	return DefaultCloneTimeout
}

// ParseUpstream validates an upstream URL: http, https or file, and no user
// name or password in it (secrets belong in the credentials file).
func ParseUpstream(raw string) (string, error) {
	bad := func(reason string) error { return &refs.InvalidInputError{Field: "upstream", Reason: reason} }
	if raw == "" {
		return "", bad("is required")
	}
	if len(raw) > 2048 {
		return "", bad("is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the input, which may hold a secret.
		return "", bad("is not a URL")
	}
	if u.User != nil {
		return "", bad("must not hold a user name or password: name a credential instead")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return "", bad("has no host")
		}
	case "file":
		if u.Host != "" || !path.IsAbs(u.Path) {
			return "", bad("a file URL must be file:///absolute/path")
		}
	default:
		return "", bad("scheme must be http, https or file")
	}
	if strings.ContainsAny(raw, " \t\r\n") || strings.HasPrefix(raw, "-") {
		return "", bad("must not contain white space")
	}
	return raw, nil
}

// upstream is how to reach p's upstream now: checked against the policy
// (its addresses resolved and pinned), with the credential its record
// names as the credentials file is now, if that credential is for the
// upstream's host and for p. A refusal is *UpstreamNotAllowedError, logged
// with its detail here (the caller sees the same message whatever it is).
func (s *Projects) upstream(ctx context.Context, p refs.Project, cfg gitops.MirrorConfig) (gitops.Upstream, error) {
	checked, err := s.Policy.Check(ctx, cfg.Upstream)
	if err != nil && !IsUpstreamNotAllowed(err) {
		// A host that does not resolve now: retryable, like an
		// unreachable one (503 upstream_unavailable), never a 500.
		return gitops.Upstream{}, upstreamError(p, "checking upstream", err)
	}
	if err != nil {
		s.logRefusal(p, err)
		return gitops.Upstream{}, err
	}
	up := gitops.Upstream{URL: checked.URL, Resolve: checked.Resolve}
	if cfg.Credential == "" {
		return up, nil
	}
	cred, ok, allowed, err := s.Credentials.Lookup(cfg.Credential, cfg.Upstream, p)
	if err != nil {
		s.logger().Warn("credentials file unreadable, using what was read before", "err", err)
	}
	if !ok {
		return up, &UpstreamRejectedError{Project: p, Reason: "credential " + strconv.Quote(cfg.Credential) + " is not in the credentials file"}
	}
	if !allowed {
		err := &UpstreamNotAllowedError{Upstream: cfg.Upstream, Detail: "credential " + strconv.Quote(cfg.Credential) + " is not for this host or project"}
		s.logRefusal(p, err)
		return up, err
	}
	up.Credential = &cred
	return up, nil
}

// logRefusal writes why the policy refused an upstream to the server's
// log, the one place that says it.
func (s *Projects) logRefusal(p refs.Project, err error) {
	var na *UpstreamNotAllowedError
	if errors.As(err, &na) {
		s.logger().Warn("upstream not allowed", "project", string(p), "upstream", na.Upstream, "why", na.Detail)
	}
}

// Register makes p a mirror of req.Upstream. created is true when a clone
// was started now or runs already (the project is cloning); false when the
// mirror existed (its record then takes over a changed upstream, host or
// credential). A local project is *ProjectConflictError. A failed clone is
// started again.
func (s *Projects) Register(ctx context.Context, req MirrorRequest) (info ProjectInfo, cloning bool, err error) {
	up, err := ParseUpstream(req.Upstream)
	if err != nil {
		return ProjectInfo{}, false, err
	}
	host, err := refs.ParseHostKind(req.Host)
	if err != nil {
		return ProjectInfo{}, false, err
	}
	if req.Credential != "" {
		if _, ok, _, _ := s.Credentials.Lookup(req.Credential, up, req.Project); !ok {
			// The same answer as a credential that is not for this host
			// or project: whoever names credentials learns no names from
			// the difference. The log says which it was.
			err := &UpstreamNotAllowedError{Upstream: up, Detail: "credential " + strconv.Quote(req.Credential) + " is not in the credentials file"}
			s.logRefusal(req.Project, err)
			return ProjectInfo{}, false, err
		}
	}
	cfg := gitops.MirrorConfig{Upstream: up, Host: string(host), Credential: req.Credential}
	// The policy and the credential's hosts and projects, before anything
	// is written: a refused registration leaves no trace.
	if _, err := s.upstream(ctx, req.Project, cfg); err != nil {
		return ProjectInfo{}, false, err
	}
	defer s.records.Forget(req.Project)
	// The SHAs its upstream lately lacked are asked for again: it may be
	// another upstream now, or another credential.
	defer s.Fetcher.ForgetMissing(req.Project)
	// The record is read, compared and written under the mirror's lock, so
	// racing registrations, a clone's outcome and a deletion each see the
	// others' writes whole.
	unlock, err := s.Repos.LockMirror(ctx, req.Project)
	if err != nil {
		return ProjectInfo{}, false, refs.Unavailable("locking mirror", err)
	}
	defer unlock()
	for attempt := 0; attempt < 3; attempt++ {
		pi, err := s.Repos.Project(req.Project)
		switch {
		case refs.IsProjectNotFound(err):
			if err := s.DiskFloor.Check(); err != nil {
				return ProjectInfo{}, false, refs.Unavailable("registering mirror", err)
			}
			created, err := s.Repos.Stage(ctx, req.Project, cfg)
			var exists *gitops.ProjectExistsError
			if errors.As(err, &exists) {
				continue // made meanwhile: look again
			}
			if err != nil {
				return ProjectInfo{}, false, refs.Unavailable("staging mirror", err)
			}
			if created {
				pi, err := s.Repos.Project(req.Project)
				if err != nil {
					return ProjectInfo{}, false, refs.Unavailable("reading project", err)
				}
				if _, err := s.startAnew(req.Project, pi.Dir, cfg, gitops.StagedRecord{}); err != nil {
					return ProjectInfo{}, false, err
				}
			}
			continue // answer what is there now
		case err != nil:
			return ProjectInfo{}, false, refs.Unavailable("reading project", err)
		case !pi.Mirror:
			return ProjectInfo{}, false, &ProjectConflictError{Project: req.Project, Reason: "is a local project, not a mirror"}
		case !pi.Staged:
			if pi.Config != cfg {
				if err := s.Repos.SetRecord(pi.Dir, cfg, gitops.StagedRecord{}); err != nil {
					return ProjectInfo{}, false, refs.Unavailable("updating mirror", err)
				}
				pi.Config = cfg
			}
			return s.describe(pi), false, nil
		default: // staged
			if s.describe(pi).State == ProjectFailed || pi.Config != cfg {
				// Tried again (a failed clone, or a clone whose process
				// died), or told of another upstream, host or
				// credential: start over, the pins' retry pace too. A
				// clone of the old record still running is superseded:
				// stopped here at once, on another replica within
				// generationPoll, and its outcome dropped.
				if err := s.DiskFloor.Check(); err != nil {
					return ProjectInfo{}, false, refs.Unavailable("registering mirror", err)
				}
				if _, err := s.startAnew(req.Project, pi.Dir, cfg, gitops.StagedRecord{}); err != nil {
					return ProjectInfo{}, false, err
				}
				continue
			}
			return s.describe(pi), true, nil
		}
	}
	return ProjectInfo{}, false, &refs.UnavailableError{Op: "registering mirror", Cause: errors.New("the project kept changing under the request")}
}

// describe turns what the repos root says into the API's view. A staged
// clone that no process of this service runs and that has not been written
// for twice the clone timeout was interrupted (its process ended): it is
// shown as failed, so that a PUT starts it again.
func (s *Projects) describe(pi gitops.ProjectInfo) ProjectInfo {
	out := ProjectInfo{Project: pi.Name, Kind: KindLocal, State: ProjectReady, FetchedAt: pi.FetchedAt}
	if !pi.Mirror {
		return out
	}
	out.Kind, out.Upstream, out.Host, out.Credential = KindMirror, pi.Config.Upstream, refs.HostKind(pi.Config.Host), pi.Config.Credential
	if out.Host == "" {
		out.Host = refs.HostGeneric
	}
	if !pi.Staged {
		return out
	}
	out.State, out.LastError = ProjectCloning, pi.LastError
	if pi.State == gitops.StagedFailed {
		out.State = ProjectFailed
	} else if !s.clonesHere(pi.Name) && time.Since(pi.Since) > 2*s.cloneTimeout() {
		out.State, out.LastError = ProjectFailed, "the clone was interrupted (its process ended); register again to retry"
	}
	return out
}

func (s *Projects) clonesHere(p refs.Project) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cloning[p]
	return ok
}

// startAnew starts the clone of the staged mirror at dir over, under the
// mirror's lock: a new generation is written into its record with state
// cloning and what rec keeps of the retry pace (Attempts, LastAttempt,
// CredentialsModTime, CredentialDigest), then the clone runs (nil once Close was called).
func (s *Projects) startAnew(p refs.Project, dir string, cfg gitops.MirrorConfig, rec gitops.StagedRecord) (*cloneRun, error) {
	rec.State, rec.LastError, rec.Failure, rec.Generation = gitops.StagedCloning, "", "", newGeneration()
	if err := s.Repos.SetRecord(dir, cfg, rec); err != nil {
		return nil, refs.Unavailable("updating mirror", err)
	}
	return s.startClone(p, cfg, rec.Generation), nil
}

// startClone runs the first fetch of a staged mirror whose record holds
// generation in the background, bounded by the clone timeout, then
// publishes it or records why not, each only while the record still holds
// generation. A clone of p this process runs already is superseded:
// stopped, and the new one waits for its git to end (LockStagedFetch).
func (s *Projects) startClone(p refs.Project, cfg gitops.MirrorConfig, generation string) *cloneRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if prev, ok := s.cloning[p]; ok {
		prev.cancel(errCloneSuperseded)
	}
	if s.cloning == nil {
		s.cloning = make(map[refs.Project]*cloneRun)
	}
	timed, cancelTimeout := context.WithTimeout(context.Background(), s.cloneTimeout())
	ctx, cancel := context.WithCancelCause(timed)
	run := &cloneRun{generation: generation, cancel: cancel, done: make(chan struct{})}
	s.cloning[p] = run
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(run.done)
		defer func() {
			cancel(nil)
			cancelTimeout()
			s.mu.Lock()
			if s.cloning[p] == run {
				delete(s.cloning, p)
			}
			s.mu.Unlock()
		}()
		// Read before the clone reads the credentials file: a file
		// written in between is newer than what the failure records, so
		// the next pin tries it at once rather than waiting out a step.
		credsMod, digest := s.Credentials.ModTime(), s.credentialDigest(cfg.Credential)
		run.err = s.clone(ctx, p, cfg, run)
		if run.err != nil && errors.Is(context.Cause(ctx), errCloneSuperseded) {
			run.err = errCloneSuperseded
		}
		log := s.logger().With("project", string(p), "upstream", cfg.Upstream)
		switch {
		case run.err == nil:
			log.Info("mirror cloned")
			return
		case errors.Is(run.err, errCloneSuperseded):
			log.Info("clone superseded, its outcome dropped")
			return
		}
		log.Warn("mirror clone failed", "err", run.err)
		if werr := s.recordFailure(p, generation, run.err, credsMod, digest); werr != nil {
			log.Error("recording the failed clone", "err", werr)
		}
	}()
	return run
}

// recordFailure writes why the clone of p that generation started failed,
// and when, into its staged record, which keeps the upstream it has now,
// unless the record no longer holds generation (the mirror was registered
// again, retried, deleted or published meanwhile: then nothing is written).
// A failure that reached the upstream counts as an attempt of the retry
// pace (see retryStep) and records credsMod and digest, the credentials
// file's modification time and the keyed digest of the mirror's entry as
// the clone read them; a stop of the service's own (the disk floor, no
// upstream turn, the staged repository's lock held elsewhere) gives back the attempt its start counted
// and leaves the pace where the last upstream failure left it.
func (s *Projects) recordFailure(p refs.Project, generation string, cloneErr error, credsMod time.Time, digest string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer s.records.Forget(p)
	unlock, err := s.Repos.LockMirror(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	pi, err := s.Repos.Project(p)
	if err != nil || !pi.Staged || pi.Generation != generation {
		s.logger().Info("clone superseded, its failure dropped", "project", string(p), "err", cloneErr)
		return nil
	}
	rec := gitops.StagedRecord{State: gitops.StagedFailed, LastError: publicError(cloneErr), Failure: failureOf(cloneErr),
		Generation: generation, Attempts: pi.Attempts, LastAttempt: time.Now(), CredentialsModTime: credsMod, CredentialDigest: digest}
	if serviceSide(cloneErr) {
		rec.Attempts, rec.LastAttempt = max(pi.Attempts-1, 0), pi.LastAttempt
		rec.CredentialsModTime, rec.CredentialDigest = pi.CredentialsModTime, pi.CredentialDigest
	}
	return s.Repos.SetRecord(pi.Dir, pi.Config, rec)
}

// clone runs the first fetch into p's staged repository and publishes it,
// the publication under the mirror's lock (a deletion renames the staged
// repository away under it), only while the record holds run's
// generation. The fetch holds the staged repository's own lock
// (LockStagedFetch), so no two clones' gits write there at once, on any
// replica, and stops once the record no longer holds its generation. Its
// failures are the domain's; a superseded clone is errCloneSuperseded.
func (s *Projects) clone(ctx context.Context, p refs.Project, cfg gitops.MirrorConfig, run *cloneRun) error {
	unlockFetch, err := s.Repos.LockStagedFetch(ctx, p)
	if err != nil {
		if ctx.Err() != nil {
			// Nothing reached the upstream: a stop of the service's own,
			// no attempt of the retry pace.
			return &refs.UnavailableError{Op: "cloning", Cause: &CloneLockedError{Project: p, Waited: s.cloneTimeout(), Cause: err}}
		}
		return refs.Unavailable("locking the staged mirror", err)
	}
	defer unlockFetch()
	if !s.holdsGeneration(p, run.generation) {
		return errCloneSuperseded
	}
	watched, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watchGeneration(watched, p, run)
	up, err := s.upstream(ctx, p, cfg)
	if err != nil {
		return err
	}
	if err := s.Repos.FetchStaged(ctx, p, up, cloneRefspecs(refs.HostKind(cfg.Host))); err != nil {
		// A stop of the service's own first: a turn waited for until the
		// clone timeout is no answer of the upstream.
		if !serviceSide(err) && errors.Is(err, context.DeadlineExceeded) {
			return &UpstreamUnavailableError{Project: p, Reason: "the clone did not end within " + s.cloneTimeout().String(), Cause: err}
		}
		return upstreamError(p, "cloning", err)
	}
	stopWatch()
	defer s.records.Forget(p)
	unlock, err := s.Repos.LockMirror(ctx, p)
	if err != nil {
		return refs.Unavailable("locking mirror", err)
	}
	defer unlock()
	pi, err := s.Repos.Project(p)
	if err != nil || !pi.Staged || pi.Generation != run.generation {
		return errCloneSuperseded
	}
	return s.Repos.Publish(p)
}

// holdsGeneration reports whether p's record is still staged with
// generation (a record that cannot be read now is taken to hold it: the
// outcome's own check under the lock decides).
func (s *Projects) holdsGeneration(p refs.Project, generation string) bool {
	pi, err := s.Repos.Project(p)
	if refs.IsProjectNotFound(err) {
		return false
	}
	return err != nil || (pi.Staged && pi.Generation == generation)
}

// watchGeneration stops run once p's record no longer holds its
// generation (superseded on another replica), until ctx ends.
func (s *Projects) watchGeneration(ctx context.Context, p refs.Project, run *cloneRun) {
	tick := time.NewTicker(generationPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !s.holdsGeneration(p, run.generation) {
				run.cancel(errCloneSuperseded)
				return
			}
		}
	}
}

// CloneForPin tries the failed first clone of mirror p again, within the
// pin's request (see refs.PinFetcher): it answers nil once the mirror is in
// place, the clone's failure (*UpstreamRejectedError,
// *UpstreamUnavailableError, *UpstreamNotAllowedError) wrapped in a
// *RetryLaterError, or, for a clone that runs already, *refs.UnavailableError
// with refs.ErrMirrorCloning. A clone that outlasts the upstream timeout
// goes on in the background and the pin is told the upstream is
// unavailable.
//
// Retries are paced, so pins cannot make the service hammer an upstream
// with the mirror's credential: the record counts them and says when the
// last one failed, and until retryStep has passed since then a pin answers
// the recorded failure at once, asking the upstream nothing. A PUT of the
// mirror, or a credentials file written since the failure (its
// modification time, which the record keeps) in which the keyed digest of
// this mirror's own entry differs from the record's, starts the pace over.
// A stop of the service's own (the disk floor, no upstream turn, the
// staged repository's lock held by another clone) is not an attempt: below the floor a pin answers 507 at once without starting a
// clone, and once the floor allows the next pin tries at once.
func (s *Projects) CloneForPin(ctx context.Context, p refs.Project) error {
	defer s.records.Forget(p)
	unlock, err := s.Repos.LockMirror(ctx, p)
	if err != nil {
		return refs.Unavailable("locking mirror", err)
	}
	pi, err := s.Repos.Project(p)
	switch {
	case err != nil:
		unlock()
		return refs.FromGit(p, "reading project", err)
	case !pi.Mirror || !pi.Staged:
		unlock()
		return nil // in place now
	case s.describe(pi).State != ProjectFailed:
		unlock()
		return &refs.UnavailableError{Op: "pinning", Cause: refs.ErrMirrorCloning}
	}
	attempts := pi.Attempts + 1
	if s.credentialsChanged(pi) {
		attempts = 1
	} else if wait := s.retryWait(pi, time.Now()); wait > 0 {
		unlock()
		return &RetryLaterError{Err: recordedFailure(p, pi), Wait: wait}
	}
	// Below the disk floor nothing would reach the upstream: 507 with its
	// own Retry-After, the record and its pace as they are, and the next
	// pin tries again once the floor allows.
	low := s.Repos.DiskFloor.Check() // the fetch's own floor; in a server the same as s.DiskFloor
	if low == nil {
		low = s.DiskFloor.Check()
	}
	if low != nil {
		unlock()
		return &refs.UnavailableError{Op: "pinning", Cause: low}
	}
	run, err := s.startAnew(p, pi.Dir, pi.Config, gitops.StagedRecord{Attempts: attempts,
		LastAttempt: pi.LastAttempt, CredentialsModTime: pi.CredentialsModTime, CredentialDigest: pi.CredentialDigest})
	unlock()
	if err != nil {
		return err
	}
	if run == nil {
		return &refs.UnavailableError{Op: "pinning", Cause: errors.New("the server is shutting down")}
	}
	wait := time.NewTimer(s.timeout())
	defer wait.Stop()
	select {
	case <-run.done:
		switch {
		case run.err == nil:
			return nil
		case errors.Is(run.err, errCloneSuperseded):
			// Registered again or deleted meanwhile: its own clone runs.
			return &refs.UnavailableError{Op: "pinning", Cause: refs.ErrMirrorCloning}
		case serviceSide(run.err):
			return run.err // not an attempt: no step to wait (503 or 507 with the default Retry-After)
		}
		return &RetryLaterError{Err: run.err, Wait: s.retryStep(attempts)}
	case <-wait.C:
		return &UpstreamUnavailableError{Project: p, Reason: "the clone did not end within " + s.timeout().String()}
	case <-ctx.Done():
		return &refs.UnavailableError{Op: "pinning", Cause: ctx.Err()}
	}
}

// publicError is what last_error says: the typed error's own message, which
// names the upstream URL (never holding a secret) and the reason, but not
// git's output.
func publicError(err error) string {
	var (
		unavail  *gitops.UpstreamUnavailableError
		rejected *gitops.UpstreamRejectedError
		exists   *gitops.ProjectExistsError
		own      *UpstreamRejectedError
		ownDown  *UpstreamUnavailableError
		locked   *CloneLockedError
		refused  *UpstreamNotAllowedError
		redirect *gitops.UpstreamRedirectError
		low      *limits.LowDiskError
		busy     *limits.BusyError
	)
	switch {
	case errors.As(err, &low):
		return "the clone was stopped: " + low.Error()
	case errors.As(err, &busy):
		return busy.Error()
	case errors.As(err, &refused):
		return refused.Error()
	case errors.As(err, &redirect):
		return (&UpstreamNotAllowedError{Upstream: redirect.Upstream}).Error()
	case errors.As(err, &unavail):
		return unavail.Error()
	case errors.As(err, &rejected):
		return rejected.Error()
	case errors.As(err, &exists):
		return "a local project took the name while the mirror was cloning"
	case errors.As(err, &own):
		return own.Reason
	case errors.As(err, &ownDown):
		return ownDown.Error()
	case errors.As(err, &locked):
		return locked.Error()
	}
	return "the clone failed; see the server log"
}

// Get answers one project, local or mirror.
func (s *Projects) Get(ctx context.Context, p refs.Project) (ProjectInfo, error) {
	pi, err := s.Repos.Project(p)
	if err != nil {
		return ProjectInfo{}, refs.FromGit(p, "reading project", err)
	}
	return s.describe(pi), nil
}

// List answers the projects in name order, limit at a time after cursor (a
// project name; "" for the first page), and the cursor of the next page
// ("" when this is the last). Only the projects visible says yes to are
// read and listed (nil: all), and the next cursor is always the last of
// them: a caller learns no name it may not see, not even from a cursor.
func (s *Projects) List(ctx context.Context, cursor string, limit int, visible func(refs.Project) bool) ([]ProjectInfo, string, error) {
	validName := func(c string) bool { _, err := refs.ParseProject(c); return err == nil }
	if err := refs.CheckPage(cursor, limit, validName); err != nil {
		return nil, "", err
	}
	live, err := s.Repos.Projects(ctx)
	if err != nil {
		return nil, "", refs.Unavailable("listing projects", err)
	}
	staged, err := s.Repos.StagedProjects(ctx)
	if err != nil {
		return nil, "", refs.Unavailable("listing projects", err)
	}
	names := slices.Compact(slices.Sorted(slices.Values(append(live, staged...))))
	start, _ := slices.BinarySearch(names, refs.Project(cursor))
	if cursor != "" && start < len(names) && names[start] == refs.Project(cursor) {
		start++
	}
	var out []ProjectInfo
	next := ""
	for _, name := range names[start:] {
		if visible != nil && !visible(name) {
			continue
		}
		if len(out) == limit {
			next = string(out[len(out)-1].Project)
			break
		}
		pi, err := s.Repos.Project(name)
		if refs.IsProjectNotFound(err) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, "", refs.Unavailable("reading project", err)
		}
		out = append(out, s.describe(pi))
	}
	return out, next, nil
}

// Delete removes a mirror: its repository with every ref, then the records
// of its pins. A local project is *ProjectConflictError; no such project
// *refs.ProjectNotFoundError. A clone this process runs is stopped.
//
// The repository goes first, under the mirror's lock: from then on a pin
// finds no project, and a pin that opened it before writes its record,
// then sees the repository gone and removes the records itself (see
// refs.Service.Pin), so no record outlives the mirror. Records left by a
// removal whose record purge failed are purged by the DELETE's retry, which
// then answers 404.
func (s *Projects) Delete(ctx context.Context, p refs.Project) error {
	defer s.records.Forget(p)
	// Looked up before its lock is taken: the lock leaves a file per name,
	// and a DELETE of a name that never was leaves nothing behind.
	if _, err := s.Repos.Project(p); err != nil {
		return s.deleteMissing(ctx, p, err)
	}
	unlock, err := s.Repos.LockMirror(ctx, p)
	if err != nil {
		return refs.Unavailable("locking mirror", err)
	}
	pi, err := s.Repos.Project(p)
	if err != nil {
		unlock()
		return s.deleteMissing(ctx, p, err)
	}
	if !pi.Mirror {
		unlock()
		return &ProjectConflictError{Project: p, Reason: "is a local project: the service deletes only mirrors"}
	}
	s.mu.Lock()
	if run, ok := s.cloning[p]; ok {
		run.cancel(errCloneSuperseded)
	}
	s.mu.Unlock()
	err = s.Repos.RemoveMirror(p)
	unlock()
	s.Fetcher.ForgetMissing(p)
	var leftover *gitops.LeftoverError
	switch {
	case refs.IsProjectNotFound(err): // removed by a racing delete
	case errors.As(err, &leftover):
		// Out of sight, its files not all removed: the mirror is gone.
		s.logger().Warn("mirror deleted, its files not all removed", "project", string(p), "err", err)
	case err != nil:
		return refs.Unavailable("removing mirror", err)
	}
	if err := s.Store.PurgeProject(ctx, p); err != nil {
		return refs.Unavailable("removing the pins' records", err)
	}
	// --redis-wait-replicas holds for a purge as for any state change; a
	// shortfall is 503 and the deletion stands (its retry answers 404).
	if err := s.Store.Replicated(ctx, p); err != nil {
		return refs.Unavailable("waiting for Redis replicas", err)
	}
	s.logger().Info("mirror deleted", "project", string(p))
	return nil
}

// deleteMissing is Delete's answer when reading the project failed with
// err: for no such project, the records a removal whose purge failed left
// behind are purged, and the answer is 404.
func (s *Projects) deleteMissing(ctx context.Context, p refs.Project, err error) error {
	if refs.IsProjectNotFound(err) {
		if err := s.Store.PurgeProject(ctx, p); err != nil {
			return refs.Unavailable("removing the pins' records", err)
		}
	}
	return refs.FromGit(p, "reading project", err)
}

// Close stops the clones this process runs and waits for them; a stopped
// clone stays staged and is shown as failed once its record is old.
func (s *Projects) Close() {
	s.mu.Lock()
	s.closed = true
	for _, run := range s.cloning {
		run.cancel(nil) // the record then says it was stopped
	}
	s.mu.Unlock()
	s.wg.Wait()
}
