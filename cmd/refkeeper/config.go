package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

// serveConfig is everything `refkeeper serve` is told. Durations are Go
// durations; every field has a flag and an environment variable, and the
// flag wins.
type serveConfig struct {
	// Listen is the HTTP address.
	Listen string
	// Repos is the root directory of the bare repositories.
	Repos string
	// RedisURL is where pins and tasks live; empty: an embedded in-process
	// Redis that keeps nothing across restarts.
	RedisURL string
	// Tokens are the bearer tokens for /api/ and /git/; empty: one is
	// generated at start-up.
	Tokens []string
	// TokensFile is where Tokens were read from (--tokens-file), read once
	// at start; empty: they came from --tokens or were generated.
	TokensFile string
	// FetchTokenKeys sign the pins' scoped fetch tokens: the first signs,
	// all verify. Empty: a random key per process.
	FetchTokenKeys []string
	// FetchTokenKeysFile is where FetchTokenKeys were read from, read once
	// at start; empty: --fetch-token-keys or none.
	FetchTokenKeysFile string
	// Retention is how long a finished pin keeps its ref.
	Retention time.Duration
	// MaxAge is the oldest any pin or unknown pipeline ref may get.
	MaxAge time.Duration
	// GCInterval is how often the GC sweep runs.
	GCInterval time.Duration
	// ReconcileInterval is how often a periodic sweep also lists each
	// project's refs on disk (adoption, restoring vanished refs).
	ReconcileInterval time.Duration
	// MaintenanceInterval is how often git's housekeeping runs in each
	// mirror (at most once per mirror per interval across replicas); zero:
	// never.
	MaintenanceInterval time.Duration
	// MaintenanceTimeout bounds one mirror's housekeeping (git gc), in
	// place of GitTimeout, which bounds the quick git commands.
	MaintenanceTimeout time.Duration
	// FetchURL is the base URL runners fetch from; empty: http://<listen>,
	// with the machine's host name for an unspecified listen host.
	FetchURL string
	// Role is api, worker or all.
	Role string
	// Demo creates a demo repository when the repos root is empty.
	Demo bool
	// StaleLockAge is the age after which a ref lock file is taken for a
	// crashed writer's and removed.
	StaleLockAge time.Duration
	// GitTimeout is the longest one git process may run before it is ended
	// (SIGTERM, then SIGKILL after a grace period).
	GitTimeout time.Duration
	// GitLockTimeout is how long a ref write waits for a lock another
	// writer holds before it answers unavailable.
	GitLockTimeout time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level
	// DebugListen is the address of the profiling listener (Go's pprof
	// handlers, no token); empty: none. Keep it on loopback.
	DebugListen string
	// MergeIdentity is author and committer of computed merges.
	MergeIdentity gitops.Identity
	// AddressRate and TokenRate bound requests per second per client
	// address and per token (bursts of twice as many); zero: no limit.
	AddressRate, TokenRate float64
	// Credentials is the JSON file of named upstream credentials for
	// mirrors; empty: none.
	Credentials string
	// UpstreamTimeout bounds one upstream fetch (a mirror's first clone too).
	UpstreamTimeout time.Duration
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client for rate limits and logs; empty: the connection's address.
	TrustedProxies []netip.Prefix
	// ShutdownTimeout is the whole budget of a shutdown after SIGTERM:
	// in-flight requests and tasks, then Redis and the git root, all
	// within it; what is still running at its end is cut off.
	ShutdownTimeout time.Duration
	// WorkerConcurrency is how many tasks a worker runs at once.
	WorkerConcurrency int
	// Hooks are the webhook secrets of the git hosts; an empty one turns
	// that host's /hooks/ route off.
	Hooks hooks.Secrets
}

// Defaults of the flags that other code does not define.
const (
	// defaultShutdownTimeout fits inside Kubernetes' default grace period
	// (30 s) with room for the kubelet's own SIGKILL bookkeeping.
	defaultShutdownTimeout = 25 * time.Second
	// defaultWorkerConcurrency is the task worker's concurrency when none
	// was asked for.
	defaultWorkerConcurrency = 4
	// minSecretLen is the shortest API token or fetch-token key accepted.
	minSecretLen = 16
)

// Roles of a serve process.
const (
	roleAPI    = "api"
	roleWorker = "worker"
	roleAll    = "all"
)

func (c serveConfig) runsAPI() bool    { return c.Role == roleAPI || c.Role == roleAll }
func (c serveConfig) runsWorker() bool { return c.Role == roleWorker || c.Role == roleAll }

// usageError is a bad flag or value: exit status 2 with one line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// flagEnv pairs each flag with its environment variable.
var flagEnv = []struct{ flag, env string }{
	{"listen", "REFKEEPER_LISTEN"},
	{"repos", "REFKEEPER_REPOS"},
	{"redis", "REFKEEPER_REDIS_URL"},
	{"tokens", "REFKEEPER_API_TOKENS"},
	{"tokens-file", "REFKEEPER_API_TOKENS_FILE"},
	{"fetch-token-keys", "REFKEEPER_FETCH_TOKEN_KEYS"},
	{"fetch-token-keys-file", "REFKEEPER_FETCH_TOKEN_KEYS_FILE"},
	{"retention", "REFKEEPER_RETENTION"},
	{"max-age", "REFKEEPER_MAX_AGE"},
	{"gc-interval", "REFKEEPER_GC_INTERVAL"},
	{"reconcile-interval", "REFKEEPER_RECONCILE_INTERVAL"},
	{"fetch-url", "REFKEEPER_FETCH_URL"},
	{"role", "REFKEEPER_ROLE"},
	{"demo", "REFKEEPER_DEMO"},
	{"stale-lock-age", "REFKEEPER_STALE_LOCK_AGE"},
	{"git-timeout", "REFKEEPER_GIT_TIMEOUT"},
	{"git-lock-timeout", "REFKEEPER_GIT_LOCK_TIMEOUT"},
	{"log-level", "REFKEEPER_LOG_LEVEL"},
	{"rate-limit-address", "REFKEEPER_RATE_LIMIT_ADDRESS"},
	{"rate-limit-token", "REFKEEPER_RATE_LIMIT_TOKEN"},
	{"trusted-proxies", "REFKEEPER_TRUSTED_PROXIES"},
	{"debug-listen", "REFKEEPER_DEBUG_LISTEN"},
	{"credentials", "REFKEEPER_CREDENTIALS"},
	{"upstream-timeout", "REFKEEPER_UPSTREAM_TIMEOUT"},
	{"maintenance-interval", "REFKEEPER_MAINTENANCE_INTERVAL"},
	{"maintenance-timeout", "REFKEEPER_MAINTENANCE_TIMEOUT"},
	{"merge-identity", "REFKEEPER_MERGE_IDENTITY"},
	{"shutdown-timeout", "REFKEEPER_SHUTDOWN_TIMEOUT"},
	{"worker-concurrency", "REFKEEPER_WORKER_CONCURRENCY"},
	{"gitlab-hook-token", "REFKEEPER_GITLAB_HOOK_TOKEN"},
	{"github-hook-secret", "REFKEEPER_GITHUB_HOOK_SECRET"},
	{"gitea-hook-secret", "REFKEEPER_GITEA_HOOK_SECRET"},
}

// parseServeConfig reads flags over environment over defaults. A bad value
// is a *usageError naming the flag or variable; -h is flag.ErrHelp with the
// usage written to help.
func parseServeConfig(args []string, getenv func(string) string, help io.Writer) (serveConfig, error) {
	c := serveConfig{}
	var tokens, tokensFile, fetchKeys, fetchKeysFile string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "HTTP `address`")
	fs.StringVar(&c.Repos, "repos", "./data/repos", "root `directory` of the bare repositories")
	fs.StringVar(&c.RedisURL, "redis", "", "Redis `URL` (redis://host:port/db, rediss://, redis+sentinel://, redis+cluster://); empty: embedded, not durable")
	fs.StringVar(&tokens, "tokens", "", "comma-separated bearer `tokens`; empty: generate one")
	fs.StringVar(&tokensFile, "tokens-file", "", "`file` of bearer tokens, one a line (# starts a comment), read at start; instead of --tokens, so tokens stay out of ps and the environment")
	fs.StringVar(&fetchKeys, "fetch-token-keys", "", "comma-separated `keys` signing fetch tokens (first signs, all verify); empty: random per process")
	fs.StringVar(&fetchKeysFile, "fetch-token-keys-file", "", "`file` of fetch-token keys, one a line, the signing one first (# starts a comment), read at start; instead of --fetch-token-keys")
	fs.DurationVar(&c.Retention, "retention", refs.DefaultRetention, "how long a finished pin keeps its ref")
	fs.DurationVar(&c.MaxAge, "max-age", refs.DefaultMaxAge, "the oldest any pin or unknown pipeline ref may get")
	fs.DurationVar(&c.GCInterval, "gc-interval", 10*time.Minute, "how often the GC sweep runs")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", time.Hour, "how often a periodic sweep also lists the refs on disk to adopt unknown ones")
	fs.StringVar(&c.FetchURL, "fetch-url", "", "base `URL` runners fetch from (default http://<listen>)")
	fs.StringVar(&c.Role, "role", roleAll, "what this process runs: api, worker or all")
	fs.BoolVar(&c.Demo, "demo", false, "create the demo/app repository when the repos root is empty")
	fs.DurationVar(&c.StaleLockAge, "stale-lock-age", gitops.DefaultStaleLockAge, "age after which a leftover ref lock file is removed")
	fs.DurationVar(&c.GitTimeout, "git-timeout", gitops.DefaultGitTimeout, "the longest one git process may run")
	fs.DurationVar(&c.GitLockTimeout, "git-lock-timeout", gitops.DefaultLockTimeout, "how long a ref write waits for a lock another writer holds")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn, error")
	fs.Float64Var(&c.AddressRate, "rate-limit-address", 500, "requests per second per client address (0: no limit)")
	fs.Float64Var(&c.TokenRate, "rate-limit-token", 1000, "requests per second per token (0: no limit)")
	fs.StringVar(&c.Credentials, "credentials", "", "JSON `file` of named upstream credentials {\"name\": {\"username\": …, \"password\": …}}, read again when it changes")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", gitops.DefaultUpstreamTimeout, "the longest one upstream fetch may take")
	fs.DurationVar(&c.MaintenanceInterval, "maintenance-interval", time.Hour, "how often git's housekeeping (gc --auto) runs in each mirror; 0: never")
	fs.DurationVar(&c.MaintenanceTimeout, "maintenance-timeout", gitops.DefaultHousekeepingTimeout, "the longest one mirror's housekeeping may take")
	fs.Func("trusted-proxies", "comma-separated `CIDRs` of load balancers whose X-Forwarded-For is believed; empty: none", func(v string) (err error) {
		c.TrustedProxies, err = api.ParseTrustedProxies(v)
		return err
	})
	fs.TextVar(&c.MergeIdentity, "merge-identity", gitops.DefaultIdentity, "author and committer of computed merges, `\"Name <email>\"`")
	fs.StringVar(&c.Hooks.GitLabToken, "gitlab-hook-token", "", "the `secret` GitLab sends in X-Gitlab-Token; empty: /hooks/gitlab is off")
	fs.StringVar(&c.Hooks.GitHubSecret, "github-hook-secret", "", "the `secret` of GitHub's X-Hub-Signature-256; empty: /hooks/github is off")
	fs.StringVar(&c.Hooks.GiteaSecret, "gitea-hook-secret", "", "the `secret` of Gitea's and Forgejo's X-Gitea-Signature; empty: /hooks/gitea is off")
	fs.StringVar(&c.DebugListen, "debug-listen", "", "`address` serving Go's pprof profiles, no token (keep it on loopback); empty: off")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "the whole budget of a shutdown after SIGTERM: in-flight requests and tasks, Redis, git")
	fs.IntVar(&c.WorkerConcurrency, "worker-concurrency", defaultWorkerConcurrency, "tasks a worker runs at once")

	for _, fe := range flagEnv {
		if v := getenv(fe.env); v != "" {
			if err := fs.Set(fe.flag, v); err != nil {
				return c, &usageError{fmt.Sprintf("invalid value %q for %s (--%s): %v", v, fe.env, fe.flag, unwrapFlagErr(err))}
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(help)
			fmt.Fprintln(help, "usage: refkeeper serve [flags]")
			fs.PrintDefaults()
			fmt.Fprintln(help, "\nEvery flag also reads an environment variable (the flag wins):")
			for _, fe := range flagEnv {
				fmt.Fprintf(help, "  --%-22s %s\n", fe.flag, fe.env)
			}
			return c, err
		}
		return c, &usageError{strings.Replace(err.Error(), "for flag -", "for --", 1)}
	}
	if fs.NArg() > 0 {
		return c, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	c.Tokens = splitTokens(tokens)
	c.FetchTokenKeys = splitTokens(fetchKeys)
	for _, f := range []struct {
		inline, path, flag, env string
		into                    *[]string
		from                    *string
	}{
		{tokens, tokensFile, "tokens", "REFKEEPER_API_TOKENS", &c.Tokens, &c.TokensFile},
		{fetchKeys, fetchKeysFile, "fetch-token-keys", "REFKEEPER_FETCH_TOKEN_KEYS", &c.FetchTokenKeys, &c.FetchTokenKeysFile},
	} {
		if f.path == "" {
			continue
		}
		if f.inline != "" {
			return c, &usageError{fmt.Sprintf("--%s and --%s-file (%s, %s_FILE) are both set: give one", f.flag, f.flag, f.env, f.env)}
		}
		secrets, err := readSecretsFile(f.path)
		if err != nil {
			return c, &usageError{fmt.Sprintf("invalid value %q for --%s-file: %v", f.path, f.flag, err)}
		}
		*f.into, *f.from = secrets, f.path
	}
	return c, c.validate()
}

// readSecretsFile reads one token or key a line, in order; blank lines and
// everything from a # on are ignored. Its errors name lines, never their
// text: a line that is wrong may still be someone's secret.
func readSecretsFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	var secrets []string
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.ContainsAny(line, " \t,"):
			return nil, fmt.Errorf("line %d holds more than one word: one a line", i+1)
		case len(line) < minSecretLen:
			return nil, fmt.Errorf("line %d: each must be at least %d characters", i+1, minSecretLen)
		}
		secrets = append(secrets, line)
	}
	if len(secrets) == 0 {
		return nil, errors.New("nothing in it but comments and blank lines")
	}
	return secrets, nil
}

// unwrapPathErr drops the path from an *os.PathError: the message that
// carries it names the file already.
func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// unwrapFlagErr keeps flag's message short: the value parser's own error.
func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func splitTokens(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (c serveConfig) validate() error {
	switch c.Role {
	case roleAPI, roleWorker, roleAll:
	default:
		return &usageError{fmt.Sprintf("invalid value %q for --role: must be api, worker or all", c.Role)}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return &usageError{fmt.Sprintf("invalid value %q for --listen: %v", c.Listen, err)}
	}
	if c.DebugListen != "" {
		if _, _, err := net.SplitHostPort(c.DebugListen); err != nil {
			return &usageError{fmt.Sprintf("invalid value %q for --debug-listen: %v", c.DebugListen, err)}
		}
	}
	if c.Repos == "" {
		return &usageError{"invalid value \"\" for --repos: must name a directory"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"retention", c.Retention}, {"max-age", c.MaxAge}, {"gc-interval", c.GCInterval},
		{"reconcile-interval", c.ReconcileInterval}, {"stale-lock-age", c.StaleLockAge},
		{"upstream-timeout", c.UpstreamTimeout}, {"maintenance-timeout", c.MaintenanceTimeout},
		{"shutdown-timeout", c.ShutdownTimeout},
		{"git-timeout", c.GitTimeout}, {"git-lock-timeout", c.GitLockTimeout}} {
		if d.v <= 0 {
			return &usageError{fmt.Sprintf("invalid value %s for --%s: must be positive", d.v, d.name)}
		}
	}
	if c.WorkerConcurrency < 1 {
		return &usageError{fmt.Sprintf("invalid value %d for --worker-concurrency: must be at least 1", c.WorkerConcurrency)}
	}
	if c.AddressRate < 0 || c.TokenRate < 0 {
		return &usageError{"invalid value for --rate-limit-address or --rate-limit-token: must not be negative"}
	}
	if c.MaintenanceInterval < 0 {
		return &usageError{fmt.Sprintf("invalid value %s for --maintenance-interval: must not be negative (0: off)", c.MaintenanceInterval)}
	}
	if c.GCInterval < time.Second {
		return &usageError{fmt.Sprintf("invalid value %s for --gc-interval: must be at least 1s", c.GCInterval)}
	}
	if c.FetchURL != "" {
		u, err := url.Parse(c.FetchURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &usageError{fmt.Sprintf("invalid value %q for --fetch-url: must be an http or https URL", c.FetchURL)}
		}
	}
	if c.RedisURL != "" {
		if _, err := redisOptions(c.RedisURL); err != nil {
			return &usageError{fmt.Sprintf("invalid value for --redis: %v", err)}
		}
	}
	if c.Credentials != "" {
		if err := (&mirrors.CredentialFile{Path: c.Credentials}).Load(); err != nil {
			return &usageError{fmt.Sprintf("invalid value for --credentials: %v", err)}
		}
	}
	for _, t := range c.Tokens {
		if len(t) < minSecretLen {
			return &usageError{fmt.Sprintf("invalid value for --tokens: every token must be at least %d characters", minSecretLen)}
		}
	}
	for _, k := range c.FetchTokenKeys {
		if len(k) < minSecretLen {
			return &usageError{fmt.Sprintf("invalid value for --fetch-token-keys: every key must be at least %d characters", minSecretLen)}
		}
	}
	return nil
}

// fetchBase is the base URL printed in fetch_url: --fetch-url, or else
// http:// and the listen address. A listen address with an unspecified host
// (0.0.0.0, ::, none) says where to accept connections, not where runners
// reach the process, so the machine's host name takes its place; guessed
// reports that, for the caller to warn. Without a host name it is an error.
func (c serveConfig) fetchBase(hostname func() (string, error)) (base string, guessed bool, err error) {
	if c.FetchURL != "" {
		return strings.TrimRight(c.FetchURL, "/"), false, nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "", false, &fetchURLError{Listen: c.Listen, Err: err}
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return "http://" + net.JoinHostPort(host, port), false, nil
	}
	name, err := hostname()
	if err == nil && name == "" {
		err = errors.New("the host name is empty")
	}
	if err != nil {
		return "", false, &fetchURLError{Listen: c.Listen, Err: err}
	}
	return "http://" + net.JoinHostPort(name, port), true, nil
}
