package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
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
	// FetchTokenKeys sign the pins' scoped fetch tokens: the first signs,
	// all verify. Empty: a random key per process.
	FetchTokenKeys []string
	// Retention is how long a finished pin keeps its ref.
	Retention time.Duration
	// MaxAge is the oldest any pin or unknown pipeline ref may get.
	MaxAge time.Duration
	// GCInterval is how often the GC sweep runs.
	GCInterval time.Duration
	// ReconcileInterval is how often a periodic sweep also lists each
	// project's refs on disk (adoption, restoring vanished refs).
	ReconcileInterval time.Duration
	// FetchURL is the base URL runners fetch from; empty: http://<listen>.
	FetchURL string
	// Role is api, worker or all.
	Role string
	// Demo creates a demo repository when the repos root is empty.
	Demo bool
	// StaleLockAge is the age after which a ref lock file is taken for a
	// crashed writer's and removed.
	StaleLockAge time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level
	// DebugListen is the address of the profiling listener (Go's pprof
	// handlers, no token); empty: none. Keep it on loopback.
	DebugListen string
	// AddressRate and TokenRate bound requests per second per client
	// address and per token (bursts of twice as many); zero: no limit.
	AddressRate, TokenRate float64
	// Credentials is the JSON file of named upstream credentials for
	// mirrors; empty: none.
	Credentials string
	// UpstreamTimeout bounds one upstream fetch (a mirror's first clone too).
	UpstreamTimeout time.Duration
}

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
	{"fetch-token-keys", "REFKEEPER_FETCH_TOKEN_KEYS"},
	{"retention", "REFKEEPER_RETENTION"},
	{"max-age", "REFKEEPER_MAX_AGE"},
	{"gc-interval", "REFKEEPER_GC_INTERVAL"},
	{"reconcile-interval", "REFKEEPER_RECONCILE_INTERVAL"},
	{"fetch-url", "REFKEEPER_FETCH_URL"},
	{"role", "REFKEEPER_ROLE"},
	{"demo", "REFKEEPER_DEMO"},
	{"stale-lock-age", "REFKEEPER_STALE_LOCK_AGE"},
	{"log-level", "REFKEEPER_LOG_LEVEL"},
	{"rate-limit-address", "REFKEEPER_RATE_LIMIT_ADDRESS"},
	{"rate-limit-token", "REFKEEPER_RATE_LIMIT_TOKEN"},
	{"debug-listen", "REFKEEPER_DEBUG_LISTEN"},
	{"credentials", "REFKEEPER_CREDENTIALS"},
	{"upstream-timeout", "REFKEEPER_UPSTREAM_TIMEOUT"},
}

// parseServeConfig reads flags over environment over defaults. A bad value
// is a *usageError naming the flag or variable; -h is flag.ErrHelp with the
// usage written to help.
func parseServeConfig(args []string, getenv func(string) string, help io.Writer) (serveConfig, error) {
	c := serveConfig{}
	var tokens, fetchKeys string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "HTTP `address`")
	fs.StringVar(&c.Repos, "repos", "./data/repos", "root `directory` of the bare repositories")
	fs.StringVar(&c.RedisURL, "redis", "", "Redis `URL` (redis://host:port/db, rediss://, redis+sentinel://, redis+cluster://); empty: embedded, not durable")
	fs.StringVar(&tokens, "tokens", "", "comma-separated bearer `tokens`; empty: generate one")
	fs.StringVar(&fetchKeys, "fetch-token-keys", "", "comma-separated `keys` signing fetch tokens (first signs, all verify); empty: random per process")
	fs.DurationVar(&c.Retention, "retention", refs.DefaultRetention, "how long a finished pin keeps its ref")
	fs.DurationVar(&c.MaxAge, "max-age", refs.DefaultMaxAge, "the oldest any pin or unknown pipeline ref may get")
	fs.DurationVar(&c.GCInterval, "gc-interval", 10*time.Minute, "how often the GC sweep runs")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", time.Hour, "how often a periodic sweep also lists the refs on disk to adopt unknown ones")
	fs.StringVar(&c.FetchURL, "fetch-url", "", "base `URL` runners fetch from (default http://<listen>)")
	fs.StringVar(&c.Role, "role", roleAll, "what this process runs: api, worker or all")
	fs.BoolVar(&c.Demo, "demo", false, "create the demo/app repository when the repos root is empty")
	fs.DurationVar(&c.StaleLockAge, "stale-lock-age", gitops.DefaultStaleLockAge, "age after which a leftover ref lock file is removed")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn, error")
	fs.Float64Var(&c.AddressRate, "rate-limit-address", 500, "requests per second per client address (0: no limit)")
	fs.Float64Var(&c.TokenRate, "rate-limit-token", 1000, "requests per second per token (0: no limit)")
	fs.StringVar(&c.Credentials, "credentials", "", "JSON `file` of named upstream credentials {\"name\": {\"username\": …, \"password\": …}}, read again when it changes")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", gitops.DefaultUpstreamTimeout, "the longest one upstream fetch may take")
	fs.StringVar(&c.DebugListen, "debug-listen", "", "`address` serving Go's pprof profiles, no token (keep it on loopback); empty: off")

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
				fmt.Fprintf(help, "  --%-15s %s\n", fe.flag, fe.env)
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
	return c, c.validate()
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
		{"upstream-timeout", c.UpstreamTimeout}} {
		if d.v <= 0 {
			return &usageError{fmt.Sprintf("invalid value %s for --%s: must be positive", d.v, d.name)}
		}
	}
	if c.AddressRate < 0 || c.TokenRate < 0 {
		return &usageError{"invalid value for --rate-limit-address or --rate-limit-token: must not be negative"}
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
		if err := (&refs.CredentialFile{Path: c.Credentials}).Load(); err != nil {
			return &usageError{fmt.Sprintf("invalid value for --credentials: %v", err)}
		}
	}
	for _, t := range c.Tokens {
		if len(t) < 16 {
			return &usageError{"invalid value for --tokens: every token must be at least 16 characters"}
		}
	}
	for _, k := range c.FetchTokenKeys {
		if len(k) < 16 {
			return &usageError{"invalid value for --fetch-token-keys: every key must be at least 16 characters"}
		}
	}
	return nil
}

// fetchBase is the base URL printed in fetch_url.
func (c serveConfig) fetchBase() string {
	if c.FetchURL != "" {
		return strings.TrimRight(c.FetchURL, "/")
	}
	return "http://" + c.Listen
}
