package githttp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/pktline"
	"github.com/refkeeper/refkeeper/refs"
)

// Pins is what the git mount asks of the domain; *refs.Service.
type Pins interface {
	Get(ctx context.Context, p refs.Project, id refs.PipelineID) (refs.Pin, error)
	RepoPath(p refs.Project) (string, error)
	Ancestors(ctx context.Context, p refs.Project, sha refs.ObjectID, limit int) ([]refs.ObjectID, error)
}

// Config is what New needs.
type Config struct {
	// Pins is the domain. Required.
	Pins Pins
	// Credentials reads who a request is from the token it presents (a
	// bearer token, or the password of HTTP basic auth, which git's
	// credential helpers send). An error is the mounting package's to
	// write (an ID token issuer that did not answer: 503). Required.
	Credentials func(r *http.Request) (Caller, error)
	// Signer verifies the pins' scoped fetch tokens. Required.
	Signer *FetchSigner
	// Git runs `git http-backend`. Empty: "git" from PATH.
	Git string
	// Timeout bounds each `git http-backend` (and the upload-pack it runs):
	// --git-timeout, as for every git process. Zero: gitexec.DefaultTimeout.
	Timeout time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the fetch metrics. Nil: none registered.
	Registerer prometheus.Registerer
	// MaxBackends bounds the `git http-backend` processes running at once
	// (--max-git-http); a request beyond it waits for a turn up to
	// QueueWait, then is answered 503 with Retry-After. Zero: no bound.
	MaxBackends int
	// QueueWait is how long a request waits for a turn. Zero:
	// DefaultQueueWait.
	QueueWait time.Duration
	// BodyBudget bounds the bytes of fetch negotiations held at once
	// (read whole, inflated) while they wait for a turn or are served; a
	// request that finds none within QueueWait is answered 503. Zero:
	// DefaultBodyBudget.
	BodyBudget int64
	// PackCache, when set, shares pack generations among identical
	// fetches (package packcache). Nil: every fetch runs its own.
	PackCache PackCache
}

// PackCache shares work among identical fetches (*packcache.Cache). Hook
// answers the environment that makes the `git http-backend` run of one
// upload-pack request hand its pack-objects to the cache, and a release
// for when it is over. Share answers a reader of the one entry of a key,
// generated once by gen (a scoped request's whole answer). ok false: do
// it as without a cache (bypass).
type PackCache interface {
	Hook(repoPath, project string, version int) (env []string, release func(), ok bool)
	Share(ctx context.Context, parts [][]byte, gen packcache.Generate) (r *packcache.Reader, hit, ok bool)
}

// Caller is who a request's token says it is: one of an API token
// (MayFetch), a CI job's ID token (Job), or neither (Token, which may
// still be a pin's fetch token).
type Caller struct {
	// Token is the presented token, checked as a fetch token when the
	// others are unset.
	Token string
	// MayFetch says which projects an API token may fetch (its role and
	// projects).
	MayFetch func(refs.Project) bool
	// Job is a CI job's identity: it fetches its own pipeline's pin as a
	// fetch token of it would (one ref, scope filter), for as long as the
	// pin is not deleted, whatever incarnation of it.
	Job *JobScope
}

// JobScope is the one pin a CI job's ID token may fetch.
type JobScope struct {
	Project  refs.Project
	Pipeline refs.PipelineID
}

// DefaultQueueWait is how long a runner's fetch waits for a turn among
// MaxBackends before it is answered 503.
const DefaultQueueWait = 30 * time.Second

// Server serves repositories read-only over git's smart HTTP protocol, at
// /git/<project>.git/..., by running `git http-backend` (the real git)
// through the one git runner.
type Server struct {
	pins        Pins
	credentials func(*http.Request) (Caller, error)
	signer      *FetchSigner
	git         *gitexec.Runner
	logger      *slog.Logger
	metrics     *metrics
	backends    *limits.Slots
	queueWait   time.Duration
	packCache   PackCache
	writeStall  time.Duration // DefaultWriteStall; tests shorten it
	bodies      *byteBudget
}

// New builds the git mount. A git that cannot be found is an error now,
// not at the first fetch.
func New(cfg Config) (*Server, error) {
	if cfg.Pins == nil || cfg.Credentials == nil || cfg.Signer == nil {
		return nil, errors.New("githttp: Pins, Credentials and Signer are required")
	}
	path, err := gitexec.LookPath(cfg.Git)
	if err != nil {
		return nil, fmt.Errorf("git smart HTTP: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{
		pins:        cfg.Pins,
		credentials: cfg.Credentials,
		signer:      cfg.Signer,
		git:         &gitexec.Runner{Git: path, Timeout: cfg.Timeout},
		logger:      logger,
		metrics:     newMetrics(cfg.Registerer),
		backends:    limits.NewSlots("runner fetches", cfg.MaxBackends),
		queueWait:   cmp.Or(cfg.QueueWait, DefaultQueueWait),
		packCache:   cfg.PackCache,
		writeStall:  DefaultWriteStall,
		bodies:      newByteBudget(cmp.Or(cfg.BodyBudget, DefaultBodyBudget)),
	}, nil
}

// Timeout is the bound of each `git http-backend`: a fetch's request body
// must arrive within it too.
func (s *Server) Timeout() time.Duration { return s.git.TimeoutOrDefault() }

// notAProjectLabel stands in the metrics for a name that is not a project:
// malformed, or with no repository behind it.
const notAProjectLabel = "invalid"

// service is one smart-HTTP endpoint of a repository.
type service int

const (
	uploadPackAdvert service = iota + 1 // GET info/refs?service=git-upload-pack
	uploadPack                          // POST git-upload-pack
	receivePack                         // push, in either form: refused
)

// splitPath splits "/git/<project>.git/<rest>" into the project and the
// service. Project names may contain ".git" themselves, so the service
// suffix decides where the name ends.
func splitPath(path, query string) (project string, svc service, rest string, err error) {
	p, ok := strings.CutPrefix(path, "/git/")
	if !ok {
		return "", 0, "", errNotFound
	}
	for _, s := range []struct {
		suffix string
		svc    service
	}{
		{".git/info/refs", uploadPackAdvert},
		{".git/git-upload-pack", uploadPack},
		{".git/git-receive-pack", receivePack},
	} {
		if name, ok := strings.CutSuffix(p, s.suffix); ok {
			svc := s.svc
			if svc == uploadPackAdvert && query != "service=git-upload-pack" {
				if query == "service=git-receive-pack" {
					svc = receivePack
				} else {
					return "", 0, "", errDumbHTTP
				}
			}
			return name, svc, strings.TrimPrefix(s.suffix, ".git"), nil
		}
	}
	return "", 0, "", errNotFound
}

// Challenge is the WWW-Authenticate value of the mount's 401s: it makes
// git ask its credential helpers, and report a refusal clearly, instead of
// failing silently.
const Challenge = `Basic realm="refkeeper"`

// authorize accepts an API token (read access to the projects its role
// covers, answered as mayFetch), a CI job's ID token (its pipeline's pin,
// answered as claims of any incarnation of it) or a scoped fetch token
// (one pipeline ref, while its pin lives, answered as its claims).
func (s *Server) authorize(r *http.Request) (mayFetch func(refs.Project) bool, scope *FetchClaims, err error) {
	caller, err := s.credentials(r)
	switch {
	case err != nil:
		return nil, nil, err
	case caller.MayFetch != nil:
		return caller.MayFetch, nil, nil
	case caller.Job != nil:
		return nil, &FetchClaims{Project: string(caller.Job.Project), PipelineID: int64(caller.Job.Pipeline), job: true}, nil
	}
	claims, err := s.signer.Verify(caller.Token)
	if err != nil {
		return nil, nil, errAuth
	}
	return nil, &claims, nil
}

// checkScope admits a scoped token only to its own project, and only while
// the pin it was issued for is alive; it answers what the token may fetch.
// A job's ID token is valid whatever becomes of its pin: another project
// is 403, and a pin that is not there (or deleted) 404 pin_not_found.
func (s *Server) checkScope(r *http.Request, scope *FetchClaims, p refs.Project) (fetchScope, error) {
	if scope.Project != string(p) {
		if scope.job {
			return fetchScope{}, errForbidden
		}
		return fetchScope{}, errAuth
	}
	id := refs.PipelineID(scope.PipelineID)
	pin, err := s.pins.Get(r.Context(), p, id)
	if refs.IsUnavailable(err) {
		return fetchScope{}, err
	}
	if scope.job && (err != nil || !scope.matches(pin)) {
		var notFound *refs.PinNotFoundError
		if err == nil || errors.As(err, &notFound) {
			return fetchScope{}, &refs.PinNotFoundError{Project: p, PipelineID: id}
		}
		return fetchScope{}, err
	}
	if err != nil || !scope.matches(pin) {
		return fetchScope{}, errAuth
	}
	return fetchScope{ref: pin.Ref().String(), sha: string(pin.SHA)}, nil
}

// scopedConfig makes upload-pack advertise one ref: every other ref (and
// HEAD) is hidden, and in v0 wants of unadvertised objects are refused.
// v2 lets a client want any object whatever this says: fetchScope.filter
// checks those requests before git sees them.
func scopedConfig(ref string) [][2]string {
	return [][2]string{
		{"uploadpack.hideRefs", "refs/"},
		{"uploadpack.hideRefs", "HEAD"},
		{"uploadpack.hideRefs", "!" + ref},
		{"uploadpack.allowAnySHA1InWant", "false"},
		{"uploadpack.allowReachableSHA1InWant", "false"},
		// allow-tip-sha1-in-want is advertised: go-git fetches by SHA only
		// from a server that offers it. The one tip it could name is the
		// pinned SHA, and fetchScope.filter lets no other want through.
		{"uploadpack.allowTipSHA1InWant", "true"},
		// uploadpack.allowRefInWant stays off: git 2.39's upload-pack
		// sends wanted-refs before shallow-info, which its own client
		// cannot read in a shallow fetch, and git clients use want-ref
		// whenever it is advertised. A v2 want-ref of the pinned ref is
		// given to git as a want of its SHA, and the wanted-refs section
		// it asks for is added to the answer in its place
		// (addWantedRef).
	}
}

// haveWalk bounds how much of a pinned commit's history is read to check
// a scoped fetch's haves: older haves are dropped, which makes a pack
// bigger, never wrong, and keeps the check's cost fixed.
const haveWalk = 10000

// reachFrom lists the commits sha reaches, newest first, up to haveWalk.
func (s *Server) reachFrom(ctx context.Context, p refs.Project, sha string) func() (map[string]bool, error) {
	return func() (map[string]bool, error) {
		ids, err := s.pins.Ancestors(ctx, p, refs.ObjectID(sha), haveWalk)
		if err != nil {
			return nil, err
		}
		reached := make(map[string]bool, len(ids))
		for _, id := range ids {
			reached[string(id)] = true
		}
		return reached, nil
	}
}

// Serve answers one request below /git/. An error is an answer not yet
// written, for the caller to write: *Error, *http.MaxBytesError, a domain
// error of refs (the project's name, Redis unavailable), or
// *refs.UnavailableError when git http-backend could not run or ended
// before it answered. A 401 has its challenge header set already.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request) error {
	mayFetch, scope, err := s.authorize(r)
	if err != nil {
		if err == errAuth {
			w.Header().Set("WWW-Authenticate", Challenge)
		}
		return err
	}
	name, svc, rest, err := splitPath(r.URL.Path, r.URL.RawQuery)
	if err != nil {
		return err
	}
	// Metrics are labelled with a real project only when the caller may
	// fetch it: a name is the client's to make up (each new label value
	// would be a new time series kept forever), and /metrics needs no
	// token, so a label must not tell anyone whether a project they may not
	// read exists. The repository is looked up only for such a caller; the
	// answers come in the order below, so a scoped token learns nothing
	// about other projects.
	p, nameErr := refs.ParseProject(name)
	covers := nameErr == nil &&
		(mayFetch == nil || mayFetch(p)) && (scope == nil || scope.Project == string(p))
	repoPath, repoErr := "", nameErr
	if covers {
		repoPath, repoErr = s.pins.RepoPath(p)
	}
	label := string(p)
	if !covers || repoErr != nil {
		label = notAProjectLabel
	}
	if svc == receivePack {
		s.metrics.fetch(label, "refused")
		return errPush
	}
	if (svc == uploadPackAdvert) != (r.Method == http.MethodGet || r.Method == http.MethodHead) ||
		(svc == uploadPack) != (r.Method == http.MethodPost) {
		return errMethod
	}
	if nameErr != nil {
		return nameErr
	}
	// An API token outside its projects learns nothing of the project,
	// not even whether it exists: 403, and its repository never looked up.
	if mayFetch != nil && !mayFetch(p) {
		s.metrics.fetch(label, "refused")
		return errForbidden
	}
	var config [][2]string
	var allowed fetchScope
	if scope != nil {
		if allowed, err = s.checkScope(r, scope, p); err != nil {
			if err == errAuth {
				w.Header().Set("WWW-Authenticate", Challenge)
			}
			s.metrics.fetch(label, "refused")
			return err
		}
		config = scopedConfig(allowed.ref)
	}
	if repoErr != nil {
		return repoErr
	}
	allowed.reach = s.reachFrom(r.Context(), p, allowed.sha)
	version := protocolVersion(r.Header)
	var body []byte
	var hookEnv []string
	wantedRef := false
	if svc == uploadPack {
		var held int64
		if body, held, err = readBody(r, s.bodies, s.queueWait); err != nil {
			if isBusy(err) {
				s.metrics.fetch(label, "busy")
			}
			return err
		}
		defer s.bodies.give(held)
		if scope != nil {
			if body, wantedRef, err = allowed.filter(version, body); err != nil {
				s.metrics.fetch(label, "refused")
				return err
			}
		}
	}
	// A scoped fetch's answer is shared whole (respcache.go): its
	// pack-producing requests, and its v0 advertisement (which otherwise
	// makes upload-pack walk every ref of the repository for hideRefs).
	shared := scope != nil && s.packCache != nil &&
		(svc == uploadPack && mayPack(version, body) ||
			svc == uploadPackAdvert && r.Method == http.MethodGet && version != protocolV2)
	if svc == uploadPack && !shared && s.packCache != nil && mayPack(version, body) {
		if env, release, ok := s.packCache.Hook(repoPath, string(p), version); ok {
			defer release()
			hookEnv = env
		}
	}
	run := backendRun{
		repoPath:    repoPath,
		method:      r.Method,
		rest:        rest,
		remoteAddr:  r.RemoteAddr,
		contentType: r.Header.Get("Content-Type"),
		version:     version,
		config:      config,
		body:        body,
		project:     label,
		env:         hookEnv,
	}
	if wantedRef {
		run.head = addWantedRef(allowed)
	}
	if scope != nil && svc == uploadPackAdvert && version != protocolV2 {
		// A v0 advertisement names HEAD's target in its capabilities
		// (symref=HEAD:refs/heads/main) even with HEAD hidden: it is
		// rewritten before it is sent. It is one ref long.
		run.rewrite = stripSymrefs
	}
	if shared {
		if entry, _, ok := s.packCache.Share(r.Context(), shareKey(p, allowed, run, wantedRef), s.generate(sharedRun(run, allowed))); ok {
			// A reader takes no --max-git-http turn: only the generation
			// runs git, in a turn of its own.
			defer entry.Close()
			status, n, err := s.serveShared(w, entry, label)
			outcome := "ok"
			if err != nil || status >= 400 {
				outcome = "error"
				if isBusy(err) {
					outcome = "busy"
				}
			}
			if svc == uploadPack {
				s.metrics.fetch(label, outcome)
			}
			s.metrics.gitBytes(label, n)
			return err
		}
	}
	// A turn is taken once the request is read whole: a slow client's
	// body holds no process.
	release, err := s.backends.AcquireWithin(r.Context(), s.queueWait)
	if err != nil {
		s.metrics.fetch(label, "busy")
		return &Error{Status: http.StatusServiceUnavailable, Message: "too many fetches at once; retry later: " + err.Error()}
	}
	defer release()
	status, n, err := s.runBackend(r.Context(), w, run)
	outcome := "ok"
	if err != nil || status >= 400 {
		outcome = "error"
	}
	if svc == uploadPack {
		s.metrics.fetch(label, outcome)
	}
	s.metrics.gitBytes(label, n)
	return err
}

// isBusy reports whether err is a 503 of the mount's own bounds.
func isBusy(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusServiceUnavailable
}

// mayPack reports whether an upload-pack request may end in a pack: any
// v0 request, a v2 fetch (not ls-refs, which every v2 fetch sends first).
func mayPack(version int, body []byte) bool {
	if version != protocolV2 {
		return true
	}
	packets, err := pktline.Decode(body)
	if err != nil {
		return true // git answers it; the cache is not asked for a pack
	}
	for _, p := range packets {
		if p.Kind != pktline.Data {
			return false
		}
		if p.Text() == "command=fetch" {
			return true
		}
	}
	return false
}

// metrics are the git mount's Prometheus metrics.
type metrics struct {
	fetches *prometheus.CounterVec
	bytes   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_git_fetches_total", Help: "git upload-pack requests by project and outcome (ok, error, refused, busy); project \"invalid\": a name that is not a project, or one the caller may not fetch.",
		}, []string{"project", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_git_bytes_served_total", Help: "Bytes sent by git smart HTTP, by project.",
		}, []string{"project"}),
	}
	if reg != nil {
		reg.MustRegister(m.fetches, m.bytes)
	}
	return m
}

func (m *metrics) fetch(project, outcome string) {
	m.fetches.WithLabelValues(project, outcome).Inc()
}

func (m *metrics) gitBytes(project string, n int64) {
	if n > 0 {
		m.bytes.WithLabelValues(project).Add(float64(n))
	}
}
