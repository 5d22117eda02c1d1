package api

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/githttp"
	"github.com/refkeeper/refkeeper/refs"
)

// Config is what New needs. Zero values mean the defaults given per field.
type Config struct {
	// Pins is the domain; *refs.Service.
	Pins Pins
	// Projects keeps mirrors; *mirrors.Projects. Nil: no /api/v1/projects routes.
	Projects Projects
	// Tokens are the admin bearer tokens accepted on /api/ and /git/.
	// Required.
	Tokens []string
	// Access is the --access file: scoped tokens (roles and projects) and
	// per-project webhook secrets. Nil: admin tokens only.
	Access *access.File
	// IDTokens verifies CI jobs' ID tokens against the access file's
	// identities; *idtoken.Verifier. Nil: no ID token is accepted.
	IDTokens IDTokens
	// FetchURL is the base URL runners fetch from, e.g. http://host:8080;
	// a pin's fetch_url is FetchURL + "/git/<project>.git".
	FetchURL string
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics. Nil: a
	// new, private one.
	Registry *prometheus.Registry
	// GitBinary runs `git http-backend`. Empty: "git" from PATH.
	GitBinary string
	// GitTimeout bounds each `git http-backend` (--git-timeout, as every
	// git process). Zero: gitexec.DefaultTimeout.
	GitTimeout time.Duration
	// PackCache shares pack generations among identical runner fetches
	// (githttp.PackCache). Nil: none.
	PackCache githttp.PackCache
	// FetchTokenKeys sign and verify the scoped fetch tokens of pins (at
	// least 16 bytes each): the first signs, all verify, for rotation. Empty:
	// a random key, so tokens die with the process and differ per replica.
	FetchTokenKeys [][]byte
	// AddressLimit bounds requests per client address (an IPv6 client by
	// its /64); TokenLimit per valid token (an invalid one counts against
	// its address only). Zero: off.
	AddressLimit, TokenLimit RateLimit
	// TrustedProxies are the load balancers whose X-Forwarded-For is
	// believed: the client is the right-most address in it that is not
	// one of them. Empty: the connection's address, whatever the header
	// says.
	TrustedProxies []netip.Prefix
	// UI builds the web page served at /ui/ (package ui, which cmd
	// builds), given this API's authenticator, so the page knows the same
	// tokens and grants; nil: no page.
	UI func(authenticate func(token string) (access.Grant, bool)) (http.Handler, error)
	// Hooks receives the git hosts' webhooks on /hooks/<host>; a host no
	// secret covers answers 404, asked per request; nil: no webhook routes.
	Hooks Webhooks
	// BodyTimeout bounds how long an /api/ or /hooks/ request's body may
	// take to arrive (a runner's fetch negotiation gets GitTimeout). Zero:
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxGitHTTP bounds the runner fetches (git http-backend processes)
	// served at once (--max-git-http); more wait up to GitQueueWait, then
	// get 503 with Retry-After. Zero: no bound.
	MaxGitHTTP int
	// GitQueueWait is how long a runner's fetch waits for a turn. Zero:
	// githttp.DefaultQueueWait.
	GitQueueWait time.Duration
}

// New builds the HTTP handler: the API, the git mount, health and metrics.
func New(cfg Config) (http.Handler, error) {
	if len(cfg.Tokens) == 0 {
		return nil, errors.New("api: at least one token is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	registry := cfg.Registry
	if registry == nil {
		registry = prometheus.NewRegistry()
	}
	metrics := newHTTPMetrics(registry)
	keys := cfg.FetchTokenKeys
	if len(keys) == 0 {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		keys = [][]byte{key}
		logger.Warn("no fetch token key set: using a random one; fetch tokens will not survive a restart or work across replicas")
	}
	signer, err := githttp.NewFetchSigner(keys)
	if err != nil {
		return nil, err
	}
	tokens := &authenticator{admins: newTokenSet(cfg.Tokens), access: cfg.Access, ids: cfg.IDTokens}
	git, err := githttp.New(githttp.Config{
		Pins: cfg.Pins,
		Credentials: func(r *http.Request) (githttp.Caller, error) {
			t := presentedToken(r, true)
			g, err := tokens.requestGrant(r, t)
			switch {
			case refs.IsUnavailable(err):
				return githttp.Caller{}, err
			case err != nil:
				return githttp.Caller{Token: t}, nil // maybe a fetch token
			case g.Role == access.Job && g.MayFetchPin():
				return githttp.Caller{Job: &githttp.JobScope{Project: g.Project, Pipeline: g.Pipeline}}, nil
			}
			return githttp.Caller{MayFetch: func(p refs.Project) bool { return g.May(access.Fetch, p) }}, nil
		},
		Signer:      signer,
		Git:         cfg.GitBinary,
		Timeout:     cfg.GitTimeout,
		Logger:      logger,
		Registerer:  registry,
		MaxBackends: cfg.MaxGitHTTP,
		QueueWait:   cfg.GitQueueWait,
		PackCache:   cfg.PackCache,
	})
	if err != nil {
		return nil, err
	}
	h := &handlers{pins: cfg.Pins, signer: signer, fetchBase: strings.TrimRight(cfg.FetchURL, "/")}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(logger)
	// Client addresses come from the connection, or from X-Forwarded-For
	// as far as trusted proxies wrote it: a spoofed entry changes nothing.
	trusted := slices.Clone(cfg.TrustedProxies)
	e.IPExtractor = func(r *http.Request) string { return clientAddr(r, trusted) }
	// Before routing: a request to no route has its body bounded too.
	e.Pre(bodyDeadline(cmp.Or(cfg.BodyTimeout, DefaultBodyTimeout), git.Timeout()))
	e.Pre(boundRequestID)
	e.Use(middleware.RequestID())
	e.Use(requestLogger(logger))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		logger.Error("panic in handler", "route", c.Path(), "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(metrics.middleware)
	e.Use(rateLimiter(cfg.AddressLimit, addressKey))
	e.Use(rateLimiter(cfg.TokenLimit, tokenKey(tokens, signer)))

	e.GET("/healthz", h.healthz)
	e.GET("/readyz", h.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})))
	e.GET("/api/v1/openapi.json", openAPIHandler()) // the contract says: no token

	// Auth is per route, not per group: echo's group middleware turns a
	// wrong method (405) into a 404.
	// Every route names what it does (access.Action): allow answers 403
	// forbidden before the handler runs when the caller's role or
	// projects do not cover it.
	auth := requireToken(tokens, `Bearer realm="refkeeper"`)
	read, write, admin := allow(access.ReadPins), allow(access.WritePins), allow(access.Administer)
	// A job's ID token may pin, get and finish its own pipeline's pin.
	readPin, writePin := allowPin(access.ReadPins), allowPin(access.WritePins)
	const v1 = "/api/v1"
	e.PUT(v1+"/projects/:project/pipelines/:id/ref", h.putPin, auth, writePin)
	e.GET(v1+"/projects/:project/pipelines/:id/ref", h.getPin, auth, readPin)
	e.DELETE(v1+"/projects/:project/pipelines/:id/ref", h.deletePin, auth, write)
	e.POST(v1+"/projects/:project/pipelines/:id/finish", h.finish, auth, writePin)
	e.GET(v1+"/projects/:project/pipelines", h.list, auth, read)
	e.POST(v1+"/projects/:project/merge_requests/:iid/close", h.closeMergeRequest, auth, write)
	e.POST(v1+"/gc", h.gc, auth, admin)
	if cfg.Projects != nil {
		ph := &projectHandlers{projects: cfg.Projects}
		e.GET(v1+"/projects", ph.list, auth, read)
		e.PUT(v1+"/projects/:project", ph.put, auth, admin)
		e.GET(v1+"/projects/:project", ph.get, auth, read)
		e.DELETE(v1+"/projects/:project", ph.delete, auth, admin)
	}

	h.mountHooks(e, cfg.Hooks) // verified by each host's signature, not a token

	// The web page authorizes itself, with the same API tokens (bearer or
	// its login cookie) and grants; not with a job's ID token.
	if cfg.UI != nil {
		page, err := cfg.UI(tokens.apiGrant)
		if err != nil {
			return nil, err
		}
		e.Any("/ui", echo.WrapHandler(page))
		e.Any("/ui/*", echo.WrapHandler(page))
	}

	// The git mount authorizes itself: API or scoped fetch token.
	e.Any("/git/*", func(c echo.Context) error { return git.Serve(c.Response(), c.Request()) })
	metrics.routes = make(map[string]bool)
	for _, r := range e.Routes() {
		metrics.routes[r.Path] = true
	}
	return e, nil
}

// requestLogger logs one line per request; never headers (they carry tokens)
// and never the query string.
func requestLogger(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			status := responseStatus(c, err)
			level := slog.LevelInfo
			if c.Request().URL.Path == "/healthz" || c.Request().URL.Path == "/readyz" || c.Request().URL.Path == "/metrics" {
				level = slog.LevelDebug
			}
			logger.Log(c.Request().Context(), level, "request",
				"method", c.Request().Method, "path", loggedPath(c.Request().URL.Path), "route", c.Path(), "status", status,
				"duration_ms", time.Since(start).Milliseconds(), "remote", c.RealIP(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
			return err
		}
	}
}

// requestIDPattern is a client's X-Request-ID that is kept (echoed and
// logged): short, of safe characters. Any other is replaced by a generated
// one, so a request with no token cannot make the log hold what it sends.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// boundRequestID drops a client's X-Request-ID that requestIDPattern
// refuses, before echo's RequestID takes it.
func boundRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !requestIDPattern.MatchString(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

// maxLoggedPath is how much of a request's path a log line keeps.
const maxLoggedPath = 512

// loggedPath is a request's path as a log line keeps it: at most
// maxLoggedPath bytes, with how much was left out.
func loggedPath(p string) string {
	if len(p) <= maxLoggedPath {
		return p
	}
	return fmt.Sprintf("%s…(%d more bytes)", p[:maxLoggedPath], len(p)-maxLoggedPath)
}
