package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/jobs"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/refs"
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
	if err := serve(ctx, cfg, logger, stdout); err != nil {
		logger.Error("refkeeper stopped", "err", err)
		return exitError
	}
	return exitOK
}

// newRoot is the repos root as the configuration says.
func newRoot(cfg serveConfig, reposDir string, logger *slog.Logger) *gitops.Root {
	return &gitops.Root{Dir: reposDir, StaleLockAge: cfg.StaleLockAge, LockTimeout: cfg.GitLockTimeout,
		GitTimeout: cfg.GitTimeout, Logger: logger}
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

	rdb, closeRedis, err := openRedis(cfg, logger)
	if err != nil {
		return err
	}
	closers.push(closeRedis)

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store := &refs.Store{Client: rdb}
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
	handler, err := httpHandler(cfg, fetchBase, svc, projects, registry, logger, stdout, reposDir, packCache)
	if err != nil {
		return err
	}

	mirrorMetrics := mirrors.NewHousekeepingMetrics(registry, root)
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
	logger.Info("refkeeper serving", "addr", ln.Addr().String(), "role", cfg.Role, "repos", reposDir,
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
		// BelowFloor: --min-free-disk's check, when it is wired here.
		Logger:     logger,
		Registerer: registry,
	})
}

func httpHandler(cfg serveConfig, fetchBase string, svc *refs.Service, projects *mirrors.Projects, registry *prometheus.Registry, logger *slog.Logger, stdout io.Writer, reposDir string, packCache *packcache.Cache) (http.Handler, error) {
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
	// One access file per process, shared by the API and the hooks, so
	// one re-read serves both.
	var accessFile *access.File
	if cfg.Access != "" {
		accessFile = &access.File{Path: cfg.Access, Logger: logger}
		if err := accessFile.Load(); err != nil {
			return nil, err
		}
	}
	var perProject hooks.ProjectSecrets
	if accessFile != nil {
		perProject = accessFile
	}
	return api.New(api.Config{
		Pins:           svc,
		Projects:       projects,
		Tokens:         tokens,
		Access:         accessFile,
		FetchURL:       fetchBase,
		Logger:         logger,
		Registry:       registry,
		FetchTokenKeys: keys,
		GitTimeout:     cfg.GitTimeout, // http-backend too: no git process outlives --git-timeout
		PackCache:      packCache,
		AddressLimit:   api.RateLimit{Rate: cfg.AddressRate},
		TokenLimit:     api.RateLimit{Rate: cfg.TokenRate},
		TrustedProxies: cfg.TrustedProxies,
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
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"not ready"}}`)
			return
		}
		io.WriteString(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}

// generateToken makes the one API token of a process started without
// --tokens, prints it once and writes it next to the repos root, readable by
// the owner only.
func generateToken(reposDir string, stdout io.Writer) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating API token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	path := filepath.Join(filepath.Dir(reposDir), "api-token")
	if err := writeFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing API token: %w", err)
	}
	fmt.Fprintf(stdout, "API token (generated, also in %s): %s\n", path, token)
	return token, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a reader
// never sees half a token and the mode is right from the first byte.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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
// It answers the client and what closes it (and the embedded Redis).
func openRedis(cfg serveConfig, logger *slog.Logger) (redis.UniversalClient, func(), error) {
	url, stopEmbedded := cfg.RedisURL, func() {}
	if url == "" {
		emb, err := startEmbeddedRedis(logger)
		if err != nil {
			return nil, nil, err
		}
		url, stopEmbedded = "redis://"+emb.Addr()+"/0", emb.Close
	}
	opts, err := redisOptions(url)
	if err != nil {
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	rdb := redis.NewUniversalClient(opts)
	return rdb, func() { rdb.Close(); stopEmbedded() }, nil
}
