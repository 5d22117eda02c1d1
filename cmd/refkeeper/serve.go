package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/idtoken"
	"github.com/refkeeper/refkeeper/jobs"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/secretfile"
	"github.com/refkeeper/refkeeper/ui"
)

// readHeaderTimeout and idleTimeout keep slow or idle clients from holding
// connections.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// demoProject is what --demo creates in an empty repos root.
const demoProject = "demo/app"

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseServeConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var uerr *usageError
	if errors.As(err, &uerr) {
		fmt.Fprintf(stderr, "refkeeper serve: %s\n", uerr.msg)
		return exitUsage
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	err = serve(ctx, cfg, logger, stdout)
	var auth *redisAuthError
	if errors.As(err, &auth) {
		fmt.Fprintf(stderr, "refkeeper serve: %s\n", auth)
		return exitUsage
	}
	if err != nil {
		logger.Error("refkeeper stopped", "err", err)
		return exitError
	}
	return exitOK
}

// newRoot is the repos root as the configuration says.
func newRoot(cfg serveConfig, reposDir string, logger *slog.Logger) *gitops.Root {
	return &gitops.Root{Dir: reposDir, StaleLockAge: cfg.StaleLockAge, LockTimeout: cfg.GitLockTimeout,
		GitTimeout: cfg.GitTimeout, Logger: logger,
		UpstreamFetches: limits.NewSlots("upstream fetches", cfg.MaxUpstreamFetches),
		DiskFloor:       diskFloor(cfg, reposDir)}
}

// belowFloor is the pack cache's view of a disk floor: true when the floor
// is set and the file system is below it.
func belowFloor(f *limits.DiskFloor) func() bool {
	return func() bool { return f != nil && limits.IsLowDisk(f.Check()) }
}

// diskFloor is the free space the repos root keeps (--min-free-disk); nil:
// none.
func diskFloor(cfg serveConfig, reposDir string) *limits.DiskFloor {
	if cfg.MinFreeDisk.IsZero() {
		return nil
	}
	return &limits.DiskFloor{Path: reposDir, Min: cfg.MinFreeDisk}
}

// serve wires the process together, runs until ctx is cancelled, and shuts
// down within cfg.ShutdownTimeout (see stopWithin).
func serve(ctx context.Context, cfg serveConfig, logger *slog.Logger, stdout io.Writer) error {
	reposDir, err := filepath.Abs(cfg.Repos)
	if err != nil {
		return fmt.Errorf("repos root: %w", err)
	}
	if err := os.MkdirAll(reposDir, 0o755); err != nil {
		return fmt.Errorf("creating repos root: %w", err)
	}
	// What serve opened, closed in reverse order on the way out: by the
	// deferred call when start-up fails, by stopWithin after a shutdown.
	closers := &closeStack{}
	defer closers.closeAll()
	root := newRoot(cfg, reposDir, logger)
	closers.push(root.Close)
	if cfg.Demo {
		if err := createDemo(root, logger); err != nil {
			return err
		}
	}

	clientLog := redisClientLogger(logger)
	redis.SetLogger(redisLog{clientLog.With("component", "go-redis")})
	rdb, where, closeRedis, err := openRedis(cfg, logger)
	if err != nil {
		return err
	}
	closers.push(closeRedis)
	if err := checkRedisAtStart(ctx, rdb, where, logger); err != nil {
		return err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store := &refs.Store{Client: rdb, Addr: where, WaitReplicas: cfg.RedisWaitReplicas}
	taskClient := asynq.NewClientFromRedisClient(rdb)
	closers.push(func() { _ = taskClient.Close() })
	// Replicas stamp and compare records with one clock: Redis's.
	clock := &refs.RedisClock{Client: rdb}
	metrics := refs.NewMetrics(registry, store, clock)
	// The task queues live in the shared Redis: every role reports them.
	jobs.RegisterQueueMetrics(registry, rdb)
	root.Observer = metrics // before any request or task uses the root
	expiry := &jobs.ExpiryScheduler{Client: taskClient}
	svc := &refs.Service{
		Repos:     root,
		Store:     store,
		Policy:    refs.Policy{Retention: cfg.Retention, MaxAge: cfg.MaxAge},
		Clock:     clock,
		Scheduler: expiry,
		Logger:    logger,
		Metrics:   metrics,
		// Never less often than the sweep itself.
		ReconcileInterval: max(cfg.ReconcileInterval, cfg.GCInterval),
		MergeIdentity:     cfg.MergeIdentity,
	}

	policy, err := mirrors.ParseUpstreamPolicy(cfg.UpstreamAllow)
	if err != nil {
		return err // checked with the flags: not reached
	}
	projects := &mirrors.Projects{
		Repos:  root,
		Policy: policy,
		Fetcher: &gitops.Fetcher{Root: root, Timeout: cfg.UpstreamTimeout,
			// Replicas take turns and share fetches; a lease outlives
			// a fetch only by a margin.
			Lease: &mirrors.FetchLeases{Store: store, TTL: cfg.UpstreamTimeout + 10*time.Second, Logger: logger}},
		Store:           store,
		Credentials:     &mirrors.CredentialFile{Path: cfg.Credentials},
		UpstreamTimeout: cfg.UpstreamTimeout,
		CloneTimeout:    cfg.CloneTimeout,
		DiskFloor:       root.DiskFloor,
		Logger:          logger,
	}
	defer projects.Close() // after the HTTP server: no request starts a clone then
	svc.Mirrors = projects

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	closers.push(func() { _ = ln.Close() }) // a no-op once the server took it
	if cfg.FetchURL == "" {
		cfg.Listen = ln.Addr().String() // a :0 port is known only now
	}
	fetchBase, guessed, err := cfg.fetchBase(os.Hostname)
	if err != nil {
		return err
	}
	if guessed {
		logger.Warn("--listen has no host runners can reach: fetch_url uses this machine's host name; set --fetch-url (REFKEEPER_FETCH_URL) to the URL runners use",
			"listen", cfg.Listen, "fetch_url", fetchBase)
	}
	packCache, err := openPackCache(cfg, reposDir, registry, logger)
	if err != nil {
		return err
	}
	closers.push(func() { _ = packCache.Close() })
	mirrorMetrics := mirrors.NewHousekeepingMetrics(registry, root)
	handler, err := httpHandler(cfg, fetchBase, svc, projects, registry, logger, stdout, reposDir, packCache,
		webPage(svc, projects, mirrorMetrics, rdb, cfg.MaxAge, logger))
	if err != nil {
		return err
	}

	housekeeping := &mirrors.Housekeeping{Repos: root, Store: store, Interval: cfg.MaintenanceInterval,
		Options: gitops.HousekeepingOptions{Timeout: cfg.MaintenanceTimeout}, Metrics: mirrorMetrics, Logger: logger}

	var worker *jobs.Worker
	if cfg.runsWorker() {
		worker, err = jobs.StartWorker(jobs.WorkerConfig{
			Redis:               rdb,
			Handlers:            &jobs.Handlers{Pins: svc, Scheduler: expiry, Mirrors: housekeeping, Logger: logger},
			Concurrency:         cfg.WorkerConcurrency,
			GCInterval:          cfg.GCInterval,
			MaintenanceInterval: cfg.MaintenanceInterval,
			// Tasks drain while the HTTP server does, in the same part of
			// the budget.
			ShutdownTimeout: drainPart(cfg.ShutdownTimeout),
			Logger:          logger,
			QueueLogger:     clientLog,
			Registerer:      registry,
		})
		if err != nil {
			return err
		}
	}

	srv := &http.Server{
		Handler: handler,
		// Slow clients cannot hold the server: headers must come quickly and
		// idle keep-alive connections are closed. No write timeout: a runner's
		// fetch of a large repository may stream for minutes.
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if cfg.DebugListen != "" {
		stopDebug, err := serveDebug(cfg.DebugListen, logger)
		if err != nil {
			if worker != nil {
				worker.Shutdown()
			}
			return err
		}
		closers.push(stopDebug)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("refkeeper serving", "addr", ln.Addr().String(), "role", cfg.Role, "repos", reposDir, "redis", where,
		"fetch_url", fetchBase, "retention", cfg.Retention.String(), "max_age", cfg.MaxAge.String(),
		"gc_interval", cfg.GCInterval.String(), "worker_concurrency", cfg.WorkerConcurrency,
		"shutdown_timeout", cfg.ShutdownTimeout.String(), "tokens_file", cfg.TokensFile,
		"fetch_token_keys_file", cfg.FetchTokenKeysFile, "version", version)

	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing in-flight requests and tasks", "budget", cfg.ShutdownTimeout.String())
	case err = <-serveErr:
	}
	stopWithin(cfg.ShutdownTimeout, logger, srv, worker, closers)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	logger.Info("refkeeper stopped")
	return err
}

// httpHandler is the full API for roles api and all, and only health and
// metrics for a worker.
// openPackCache opens the pack cache of runner fetches (off with
// --pack-cache-dir off, or in a process that serves no fetches). Its hook
// is this very binary.
func openPackCache(cfg serveConfig, reposDir string, registry *prometheus.Registry, logger *slog.Logger) (*packcache.Cache, error) {
	dir := cfg.packCacheDir(reposDir)
	if !cfg.runsAPI() {
		dir = ""
	}
	var hook []string
	if dir != "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("pack cache: finding this binary for its hook: %w", err)
		}
		hook = []string{exe, packcache.HookCommand}
	}
	return packcache.Open(packcache.Config{
		Dir:      dir,
		MaxBytes: cfg.PackCacheMaxBytes,
		MaxAge:   cfg.PackCacheMaxAge,
		Hook:     hook,
		Git:      &gitexec.Runner{Timeout: cfg.GitTimeout},
		// Below --min-free-disk the cache steps aside: fetches go on
		// without it rather than fail.
		BelowFloor: belowFloor(diskFloor(cfg, dir)),
		Logger:     logger,
		Registerer: registry,
	})
}

func httpHandler(cfg serveConfig, fetchBase string, svc *refs.Service, projects *mirrors.Projects, registry *prometheus.Registry, logger *slog.Logger, stdout io.Writer, reposDir string, packCache *packcache.Cache,
	page func(func(string) (access.Grant, bool)) (http.Handler, error)) (http.Handler, error) {
	if !cfg.runsAPI() {
		return healthHandler(svc, registry), nil
	}
	tokens := cfg.Tokens
	if len(tokens) == 0 {
		token, err := generateToken(reposDir, stdout)
		if err != nil {
			return nil, err
		}
		tokens = []string{token}
	}
	var keys [][]byte
	for _, k := range cfg.FetchTokenKeys {
		keys = append(keys, []byte(k))
	}
	if len(keys) == 0 {
		key, err := fetchTokenKey(reposDir, logger)
		if err != nil {
			return nil, err
		}
		if key != nil {
			keys = [][]byte{key}
		}
	}
	// One access file per process, shared by the API and the hooks, so
	// one re-read serves both.
	var accessFile *access.File
	if cfg.Access != "" {
		accessFile = &access.File{Path: cfg.Access, Logger: logger}
		if err := accessFile.Load(); err != nil {
			return nil, err
		}
	}
	var (
		perProject hooks.ProjectSecrets
		idTokens   api.IDTokens
	)
	if accessFile != nil {
		perProject = accessFile
		// Issuers are asked lazily, at their first token: one that is
		// down now stops nothing.
		idTokens = &idtoken.Verifier{Identities: accessFile.Identities, Logger: logger}
	}
	return api.New(api.Config{
		Pins:           svc,
		Projects:       projects,
		Tokens:         tokens,
		Access:         accessFile,
		IDTokens:       idTokens,
		FetchURL:       fetchBase,
		Logger:         logger,
		Registry:       registry,
		FetchTokenKeys: keys,
		GitTimeout:     cfg.GitTimeout, // http-backend too: no git process outlives --git-timeout
		MaxGitHTTP:     cfg.MaxGitHTTP,
		PackCache:      packCache,
		AddressLimit:   api.RateLimit{Rate: cfg.AddressRate},
		TokenLimit:     api.RateLimit{Rate: cfg.TokenRate},
		TrustedProxies: cfg.TrustedProxies,
		UI:             page,
		Hooks: &hooks.Receiver{
			Domain: svc,
			// An event time lives as long as a pin may.
			Deliveries: &hooks.RedisDeliveries{Client: svc.Store.Client, Keys: svc.Store.Keys, EventTTL: svc.Policy.MaxAge},
			Secrets:    cfg.Hooks,
			PerProject: perProject,
			Metrics:    hooks.NewMetrics(registry),
			Logger:     logger,
		},
	})
}

// webPage builds GET /ui/ over the pins, the projects and the mirrors'
// sizes, with asynq's queue monitor (asynqmon, read-only) at /ui/queues/
// on the shared Redis.
func webPage(svc *refs.Service, projects *mirrors.Projects, mirrorMetrics *mirrors.HousekeepingMetrics, rdb redis.UniversalClient,
	maxAge time.Duration, logger *slog.Logger) func(func(string) (access.Grant, bool)) (http.Handler, error) {
	return func(authenticate func(string) (access.Grant, bool)) (http.Handler, error) {
		monitor := asynqmon.New(asynqmon.Options{RootPath: ui.QueuesRoot, RedisConnOpt: sharedRedis{rdb}, ReadOnly: true})
		return ui.New(ui.Config{Projects: projects, Pins: svc, Authenticate: authenticate,
			Sizes: mirrorMetrics.MirrorSizes, Queues: monitor, MaxAge: maxAge, Logger: logger})
	}
}

// sharedRedis hands asynqmon the process's Redis client instead of a
// connection of its own (the monitor is never closed: the client is
// closed with the process's).
type sharedRedis struct{ redis.UniversalClient }

func (s sharedRedis) MakeRedisClient() any { return s.UniversalClient }

// healthHandler serves /healthz, /readyz and /metrics for a worker process.
func healthHandler(svc *refs.Service, registry *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := svc.Ready(ctx); err != nil {
			message := "not ready"
			var u *refs.UnavailableError
			if errors.As(err, &u) {
				message = u.Op // what is missing, never a secret (Cause may quote a server)
			}
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "unavailable", "message": message}})
			w.Write(body)
			return
		}
		io.WriteString(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}

// generateToken answers the one API token of a process started without
// --tokens: the one in api-token next to the repos root when it is there (a
// restart, or another replica on the same root, keeps the token people
// were given), else a new one written there, readable by the owner only.
// A new token is printed once; a kept one is not printed again (it lives
// for good, and start-up lines end up in logs): the start says where it is.
func generateToken(reposDir string, stdout io.Writer) (string, error) {
	path := filepath.Join(filepath.Dir(reposDir), "api-token")
	token, created, err := secretfile.Shared(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	if created {
		fmt.Fprintf(stdout, "API token (generated, also in %s): %s\n", path, token)
	} else {
		fmt.Fprintf(stdout, "API token: kept in %s\n", path)
	}
	return token, nil
}

// fetchTokenKey answers the fetch-token key of a process started without
// --fetch-token-keys, kept in fetch-token-key next to the repos root like
// the API token: every replica on that root (and every restart) signs and
// verifies with the same key, so a fetch token one of them issued opens
// the pin on all of them. A key drawn per process would have half of the
// fetch tokens refused behind one URL with two replicas.
func fetchTokenKey(reposDir string, logger *slog.Logger) ([]byte, error) {
	path := filepath.Join(filepath.Dir(reposDir), "fetch-token-key")
	key, created, err := secretfile.Shared(path)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		// Nowhere to keep one: a key of this process alone, as before
		// there was a file (api.New warns that tokens then die with it).
		logger.Warn("cannot keep a generated fetch-token key beside the repos root; set --fetch-token-keys", "file", path, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch-token key: %w", err)
	}
	if created {
		logger.Info("no --fetch-token-keys: generated one, shared by every replica on this repos root", "file", path)
	}
	return []byte(key), nil
}

// createDemo creates demo/app when the repos root holds nothing yet.
func createDemo(root *gitops.Root, logger *slog.Logger) error {
	entries, err := os.ReadDir(root.Dir)
	if err != nil {
		return fmt.Errorf("reading repos root: %w", err)
	}
	if len(entries) > 0 {
		return nil
	}
	name, err := gitops.ParseProjectName(demoProject)
	if err != nil {
		return err
	}
	created, err := root.CreateDemo(name)
	if err != nil {
		return err
	}
	if created {
		logger.Info("created demo project", "project", demoProject,
			"merge_ref", gitops.MergeRequestRef(gitops.DemoMergeRequestIID).String())
	}
	return nil
}

// openRedis connects to the configured Redis, or starts the embedded one.
// It answers the client, where it points (for messages) and what closes it
// (and the embedded Redis).
func openRedis(cfg serveConfig, logger *slog.Logger) (redis.UniversalClient, string, func(), error) {
	url, stopEmbedded := cfg.RedisURL, func() {}
	if url == "" {
		emb, err := startEmbeddedRedis(logger)
		if err != nil {
			return nil, "", nil, err
		}
		url, stopEmbedded = "redis://"+emb.Addr()+"/0", emb.Close
	}
	opts, err := redisOptions(url)
	if err != nil {
		return nil, "", nil, fmt.Errorf("redis: %w", err)
	}
	rdb := redis.NewUniversalClient(opts)
	return rdb, describeRedis(opts), func() { rdb.Close(); stopEmbedded() }, nil
}
