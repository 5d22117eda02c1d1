package main

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/packcache"
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
	// RedisWaitReplicas is how many replicas must have a request's
	// changes before it answers; zero: none.
	RedisWaitReplicas int
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
	// Access is the JSON file of scoped tokens, CI identities and
	// per-project webhook secrets; empty: admin tokens and host-wide hook
	// secrets only.
	Access string
	// UpstreamTimeout bounds one upstream fetch (a mirror's first clone too).
	UpstreamTimeout time.Duration
	// UpstreamAllow is the comma-separated patterns a mirror's upstream
	// must match (mirrors.ParseUpstreamPolicy).
	UpstreamAllow string
	// CloneTimeout bounds a mirror's first clone, in place of
	// UpstreamTimeout and GitTimeout.
	CloneTimeout time.Duration
	// MaxUpstreamFetches bounds the upstream clones and fetches running
	// at once in this process.
	MaxUpstreamFetches int
	// MaxGitHTTP bounds the runner fetches (git http-backend processes)
	// served at once in this process.
	MaxGitHTTP int
	// MinFreeDisk is the free space the repos root keeps (a percentage of
	// its file system or bytes); zero: no floor.
	MinFreeDisk limits.Size
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
	// PackCacheDir keeps the packs generated for runner fetches; empty:
	// <repos>/../pack-cache; "off": no cache.
	PackCacheDir string
	// PackCacheMaxBytes and PackCacheMaxAge bound the pack cache.
	PackCacheMaxBytes int64
	PackCacheMaxAge   time.Duration
}

// packCacheOff is the --pack-cache-dir that turns the cache off.
const packCacheOff = "off"

// packCacheDir is the pack cache's directory; empty: off.
func (c serveConfig) packCacheDir(reposDir string) string {
	switch c.PackCacheDir {
	case packCacheOff:
		return ""
	case "":
		return filepath.Join(filepath.Dir(filepath.Clean(reposDir)), "pack-cache")
	}
	return c.PackCacheDir
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

// serveFlags is every flag of `refkeeper serve`, each written once: its
// name, environment variable, default, usage, where its value goes and what
// makes a value valid. The flag set, the environment lookup, the validation
// and the -h text are made from it, and a test holds the flag table of
// docs/running.md to it.
var serveFlags = []serveFlag{
	newFlag("listen", "HTTP `address`",
		"127.0.0.1:8080", func(c *serveConfig) *string { return &c.Listen }, stringCodec, checkHostPort),
	newFlag("repos", "root `directory` of the bare repositories",
		"./data/repos", func(c *serveConfig) *string { return &c.Repos }, stringCodec, checkNotEmpty("must name a directory")),
	// withEnv: the three variables named before the rule keep their names
	// (the contract's flag table lists them).
	newFlag("redis", "Redis `URL` (redis://host:port/db, rediss://, redis+sentinel://, redis+cluster://); empty: embedded, not durable",
		"", func(c *serveConfig) *string { return &c.RedisURL }, stringCodec, checkEmptyOr(checkRedisURL)).
		withEnv("REFKEEPER_REDIS_URL").holdsSecret(),
	newFlag("redis-wait-replicas", "after every state change, wait (Redis WAIT, up to 1 s) until this many replicas have it; fewer: 503",
		0, func(c *serveConfig) *int { return &c.RedisWaitReplicas }, intCodec, checkNotNegative[int]("")),
	newFlag("tokens", "comma-separated bearer `tokens`; empty: the one in <repos>/../api-token, generated if absent",
		nil, func(c *serveConfig) *[]string { return &c.Tokens }, listCodec, checkSecrets("every token")).
		withEnv("REFKEEPER_API_TOKENS").holdsSecret(),
	newFlag("tokens-file", "`file` of bearer tokens, one a line (# starts a comment), read at start; instead of --tokens, so tokens stay out of ps and the environment",
		"", func(c *serveConfig) *string { return &c.TokensFile }, stringCodec, nil).
		withEnv("REFKEEPER_API_TOKENS_FILE"),
	newFlag("fetch-token-keys", "comma-separated `keys` signing fetch tokens (first signs, all verify); empty: the one in <repos>/../fetch-token-key, generated if absent",
		nil, func(c *serveConfig) *[]string { return &c.FetchTokenKeys }, listCodec, checkSecrets("every key")).
		holdsSecret(),
	newFlag("fetch-token-keys-file", "`file` of fetch-token keys, one a line, the signing one first (# starts a comment), read at start; instead of --fetch-token-keys",
		"", func(c *serveConfig) *string { return &c.FetchTokenKeysFile }, stringCodec, nil),
	newFlag("retention", "how long a finished pin keeps its ref",
		refs.DefaultRetention, func(c *serveConfig) *time.Duration { return &c.Retention }, durationCodec, checkPositive),
	newFlag("max-age", "the oldest any pin or unknown pipeline ref may get",
		refs.DefaultMaxAge, func(c *serveConfig) *time.Duration { return &c.MaxAge }, durationCodec, checkPositive),
	newFlag("gc-interval", "how often the GC sweep runs",
		10*time.Minute, func(c *serveConfig) *time.Duration { return &c.GCInterval }, durationCodec, checkAtLeast(time.Second)),
	newFlag("reconcile-interval", "how often a periodic sweep also lists the refs on disk to adopt unknown ones",
		time.Hour, func(c *serveConfig) *time.Duration { return &c.ReconcileInterval }, durationCodec, checkPositive),
	newFlag("fetch-url", "base `URL` runners fetch from",
		"", func(c *serveConfig) *string { return &c.FetchURL }, stringCodec, checkEmptyOr(checkFetchURL)).
		derivedDefault("http://<listen>"),
	newFlag("role", "what this process runs: api, worker or all",
		roleAll, func(c *serveConfig) *string { return &c.Role }, stringCodec, checkRole),
	newFlag("demo", "create the demo/app repository when the repos root is empty",
		false, func(c *serveConfig) *bool { return &c.Demo }, boolCodec, nil),
	newFlag("stale-lock-age", "age after which a leftover ref lock file is removed",
		gitops.DefaultStaleLockAge, func(c *serveConfig) *time.Duration { return &c.StaleLockAge }, durationCodec, checkPositive),
	newFlag("git-timeout", "the longest one git process may run",
		gitops.DefaultGitTimeout, func(c *serveConfig) *time.Duration { return &c.GitTimeout }, durationCodec, checkPositive),
	newFlag("git-lock-timeout", "how long a ref write waits for a lock another writer holds",
		gitops.DefaultLockTimeout, func(c *serveConfig) *time.Duration { return &c.GitLockTimeout }, durationCodec, checkPositive),
	newFlag("pack-cache-dir", "`directory` where packs generated for runner fetches are kept so identical fetches share one generation; off: no cache",
		"", func(c *serveConfig) *string { return &c.PackCacheDir }, stringCodec, nil).
		derivedDefault("<repos>/../pack-cache"),
	newFlag("pack-cache-max-bytes", "the pack cache's size (bytes, or like 10GiB); the oldest entries go first",
		int64(packcache.DefaultMaxBytes), func(c *serveConfig) *int64 { return &c.PackCacheMaxBytes }, bytesCodec, checkPositiveBytes),
	newFlag("pack-cache-max-age", "how long a generated pack is served again",
		packcache.DefaultMaxAge, func(c *serveConfig) *time.Duration { return &c.PackCacheMaxAge }, durationCodec, checkPositive),
	newFlag("log-level", "log `level`: debug, info, warn, error",
		slog.LevelInfo, func(c *serveConfig) *slog.Level { return &c.LogLevel }, textCodec[slog.Level](), nil),
	newFlag("rate-limit-address", "requests per second per client address (0: no limit)",
		500.0, func(c *serveConfig) *float64 { return &c.AddressRate }, floatCodec, checkNotNegative[float64]("")),
	newFlag("rate-limit-token", "requests per second per token (0: no limit)",
		1000.0, func(c *serveConfig) *float64 { return &c.TokenRate }, floatCodec, checkNotNegative[float64]("")),
	newFlag("trusted-proxies", "comma-separated `CIDRs` of load balancers whose X-Forwarded-For is believed; empty: none",
		nil, func(c *serveConfig) *[]netip.Prefix { return &c.TrustedProxies }, prefixCodec, nil),
	newFlag("debug-listen", "`address` serving Go's pprof profiles, no token (keep it on loopback); empty: off",
		"", func(c *serveConfig) *string { return &c.DebugListen }, stringCodec, checkEmptyOr(checkHostPort)),
	// Its loader's errors name the file already.
	newFlag("credentials", "JSON `file` of named upstream credentials {\"name\": {\"username\": …, \"password\": …, \"hosts\": [\"host\"], \"projects\": [\"group/*\"]}} (hosts required), read again when it changes",
		"", func(c *serveConfig) *string { return &c.Credentials }, stringCodec, checkEmptyOr(checkCredentials)).
		holdsSecret(),
	// Its loader's errors name the file already.
	newFlag("access", "JSON `file` of scoped tokens (roles, projects), CI identities and per-project webhook secrets, read again when it changes",
		"", func(c *serveConfig) *string { return &c.Access }, stringCodec, checkEmptyOr(checkAccess)).
		holdsSecret(),
	newFlag("upstream-timeout", "the longest one upstream fetch may take",
		gitops.DefaultUpstreamTimeout, func(c *serveConfig) *time.Duration { return &c.UpstreamTimeout }, durationCodec, checkPositive),
	newFlag("upstream-allow", "comma-separated `patterns` scheme://host[:port][/path-prefix] a mirror's upstream must match; internal addresses only where a pattern names the host",
		mirrors.DefaultUpstreamAllow, func(c *serveConfig) *string { return &c.UpstreamAllow }, stringCodec, checkUpstreamAllow),
	newFlag("clone-timeout", "the longest a mirror's first clone may take (it runs after the 202)",
		mirrors.DefaultCloneTimeout, func(c *serveConfig) *time.Duration { return &c.CloneTimeout }, durationCodec, checkPositive),
	newFlag("max-upstream-fetches", "upstream clones and fetches running at once in one process; more wait within their request's deadline, then 503",
		4, func(c *serveConfig) *int { return &c.MaxUpstreamFetches }, intCodec, checkAtLeastOne),
	newFlag("max-git-http", "runner fetches (git http-backend) served at once in one process; more wait up to 30s, then 503 with Retry-After",
		32, func(c *serveConfig) *int { return &c.MaxGitHTTP }, intCodec, checkAtLeastOne),
	newFlag("min-free-disk", "free `space` the repos root keeps (5%, or bytes like 10GiB; 0: no floor): below it new mirrors and upstream fetches get 507 and a running clone is stopped",
		limits.Size{Percent: 5}, func(c *serveConfig) *limits.Size { return &c.MinFreeDisk }, sizeCodec, nil),
	newFlag("maintenance-interval", "how often git's housekeeping (gc --auto) runs in each mirror; 0: never",
		time.Hour, func(c *serveConfig) *time.Duration { return &c.MaintenanceInterval }, durationCodec, checkNotNegative[time.Duration](" (0: off)")),
	newFlag("maintenance-timeout", "the longest one mirror's housekeeping may take",
		gitops.DefaultHousekeepingTimeout, func(c *serveConfig) *time.Duration { return &c.MaintenanceTimeout }, durationCodec, checkPositive),
	newFlag("merge-identity", "author and committer of computed merges, `\"Name <email>\"`",
		gitops.DefaultIdentity, func(c *serveConfig) *gitops.Identity { return &c.MergeIdentity }, textCodec[gitops.Identity](), nil),
	newFlag("shutdown-timeout", "the whole budget of a shutdown after SIGTERM: in-flight requests and tasks, Redis, git",
		defaultShutdownTimeout, func(c *serveConfig) *time.Duration { return &c.ShutdownTimeout }, durationCodec, checkPositive),
	newFlag("worker-concurrency", "tasks a worker runs at once",
		defaultWorkerConcurrency, func(c *serveConfig) *int { return &c.WorkerConcurrency }, intCodec, checkAtLeastOne),
	newFlag("gitlab-hook-token", "the `secret` GitLab sends in X-Gitlab-Token; every project; empty: /hooks/gitlab is off unless the --access file has a secret for it",
		"", func(c *serveConfig) *string { return &c.Hooks.GitLabToken }, stringCodec, nil).
		holdsSecret(),
	newFlag("github-hook-secret", "the `secret` of GitHub's X-Hub-Signature-256; every project; empty: /hooks/github is off unless the --access file has a secret for it",
		"", func(c *serveConfig) *string { return &c.Hooks.GitHubSecret }, stringCodec, nil).
		holdsSecret(),
	newFlag("gitea-hook-secret", "the `secret` of Gitea's and Forgejo's X-Gitea-Signature; every project; empty: /hooks/gitea is off unless the --access file has a secret for it",
		"", func(c *serveConfig) *string { return &c.Hooks.GiteaSecret }, stringCodec, nil).
		holdsSecret(),
}

// serveFlag is one row of serveFlags. Build it with newFlag.
type serveFlag struct {
	// name is the flag without its dashes.
	name string
	// env is the environment variable: envName(name) unless withEnv said
	// otherwise.
	env string
	// usage is the -h text; a word in backquotes names the flag's value.
	usage string
	// defaultText is the default as the docs and -h show it where it is
	// worked out at start from other values; empty: the default value's
	// own text.
	defaultText string
	// secret: the value may be or hold a secret, so no message shows it.
	secret bool
	// bind is the flag's value in c, set to its default: parsing writes
	// straight into c.
	bind func(c *serveConfig) configValue
}

// withEnv names an environment variable other than envName's, for the
// variables whose names were chosen before the rule (see docs/running.md).
func (f serveFlag) withEnv(env string) serveFlag { f.env = env; return f }

// holdsSecret keeps the value out of every message and out of
// /debug/pprof/cmdline: it is, or may hold, a secret, or names where one is.
func (f serveFlag) holdsSecret() serveFlag { f.secret = true; return f }

// derivedDefault says what the flag's empty default stands for.
func (f serveFlag) derivedDefault(text string) serveFlag { f.defaultText = text; return f }

// envName is a flag's environment variable: REFKEEPER_ and the name in
// upper case with underscores, --max-age -> REFKEEPER_MAX_AGE.
func envName(flagName string) string {
	return "REFKEEPER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlag is a flag of type T: its default, the field of serveConfig it
// fills, how its text becomes a T and back, and what makes a parsed value
// valid (nil: whatever parses). check says what is wrong in a few words;
// the message around them names the flag.
func newFlag[T any](name, usage string, def T, field func(*serveConfig) *T, codec codec[T], check func(T) error) serveFlag {
	return serveFlag{name: name, env: envName(name), usage: usage,
		bind: func(c *serveConfig) configValue {
			p := field(c)
			*p = def
			return &typedValue[T]{p: p, codec: codec, check: check}
		}}
}

// configValue is a flag.Value that also validates what it holds.
type configValue interface {
	flag.Value
	// validate says what is wrong with the value, nil if nothing.
	validate() error
	// shown is the value as a message shows it: quoted if it is text.
	shown() string
	// kind names the value in -h ("" for a flag that takes none).
	kind() string
}

// codec turns a flag's text into its value and back.
type codec[T any] struct {
	// kind names the value in -h when the usage does not.
	kind   string
	parse  func(string) (T, error)
	format func(T) string
}

// typedValue is the configValue of one serveConfig field of type T.
type typedValue[T any] struct {
	p     *T
	codec codec[T]
	check func(T) error
}

func (v *typedValue[T]) Set(s string) error {
	x, err := v.codec.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *typedValue[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.codec.format(*v.p)
}

// IsBoolFlag lets a bool flag stand without a value (--demo), as flag's
// own bool flags do.
func (v *typedValue[T]) IsBoolFlag() bool { _, ok := any(v.p).(*bool); return ok }

func (v *typedValue[T]) validate() error {
	if v.check == nil {
		return nil
	}
	return v.check(*v.p)
}

func (v *typedValue[T]) kind() string { return v.codec.kind }

func (v *typedValue[T]) shown() string {
	if s, ok := any(*v.p).(string); ok {
		return strconv.Quote(s)
	}
	return v.String()
}

// The codecs of the flags' types.
var (
	stringCodec = codec[string]{"string", func(s string) (string, error) { return s, nil }, func(s string) string { return s }}
	listCodec   = codec[[]string]{"list", func(s string) ([]string, error) { return splitTokens(s), nil },
		func(l []string) string { return strings.Join(l, ",") }}
	durationCodec = codec[time.Duration]{"duration", func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, durationError(s)
		}
		return d, nil
	}, time.Duration.String}
	intCodec = codec[int]{"int", func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, errors.New("not a whole number")
		}
		return n, nil
	}, strconv.Itoa}
	floatCodec = codec[float64]{"number", func(s string) (float64, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, errors.New("not a number")
		}
		return f, nil
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }}
	boolCodec = codec[bool]{"", func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, errors.New("must be true or false")
		}
		return b, nil
	}, strconv.FormatBool}
	sizeCodec   = codec[limits.Size]{"size", limits.ParseSize, limits.Size.String}
	bytesCodec  = codec[int64]{"bytes", parseBytes, formatBytes}
	prefixCodec = codec[[]netip.Prefix]{"CIDRs", api.ParseTrustedProxies, func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, ",")
	}}
)

// textCodec is the codec of a type that reads and writes itself as text
// (slog.Level, gitops.Identity).
func textCodec[T any, PT interface {
	*T
	encoding.TextUnmarshaler
	encoding.TextMarshaler
}]() codec[T] {
	return codec[T]{"value", func(s string) (T, error) {
		var v T
		err := PT(&v).UnmarshalText([]byte(s))
		return v, err
	}, func(v T) string {
		b, err := PT(&v).MarshalText()
		if err != nil {
			return ""
		}
		return string(b)
	}}
}

// parseBytes reads an amount of bytes the way --min-free-disk does
// (limits.ParseSize: 1234, 10GiB, 500MB), but not a percentage.
func parseBytes(s string) (int64, error) {
	size, err := limits.ParseSize(s)
	if err != nil || size.Percent > 0 || size.Bytes > 1<<62 {
		return 0, errors.New("not a size (bytes, or like 10GiB or 500MB)")
	}
	return int64(size.Bytes), nil
}

// formatBytes writes an amount of bytes as parseBytes reads it.
func formatBytes(n int64) string { return limits.Size{Bytes: uint64(n)}.String() }

// The checks of the flags' values: each says what is wrong in a few words.

func checkPositiveBytes(n int64) error {
	if n <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

func checkPositive(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

func checkAtLeast(least time.Duration) func(time.Duration) error {
	return func(d time.Duration) error {
		if err := checkPositive(d); err != nil {
			return err
		}
		if d < least {
			return fmt.Errorf("must be at least %s", least)
		}
		return nil
	}
}

func checkNotNegative[T int | float64 | time.Duration](note string) func(T) error {
	return func(v T) error {
		if v < 0 {
			return errors.New("must not be negative" + note)
		}
		return nil
	}
}

func checkAtLeastOne(n int) error {
	if n < 1 {
		return errors.New("must be at least 1")
	}
	return nil
}

func checkNotEmpty(why string) func(string) error {
	return func(s string) error {
		if s == "" {
			return errors.New(why)
		}
		return nil
	}
}

// checkEmptyOr accepts the empty value (the flag's "off") and checks any
// other.
func checkEmptyOr(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

func checkHostPort(addr string) error {
	_, _, err := net.SplitHostPort(addr)
	return err
}

func checkRole(role string) error {
	switch role {
	case roleAPI, roleWorker, roleAll:
		return nil
	}
	return errors.New("must be api, worker or all")
}

func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http or https URL")
	}
	return nil
}

func checkRedisURL(s string) error {
	_, err := redisOptions(s)
	return err
}

func checkAccess(path string) error {
	return (&access.File{Path: path}).Load()
}

func checkUpstreamAllow(list string) error {
	_, err := mirrors.ParseUpstreamPolicy(list)
	return err
}

func checkCredentials(path string) error {
	return (&mirrors.CredentialFile{Path: path}).Load()
}

// checkSecrets refuses tokens or keys too short to be secret; what names
// them ("every token") starts the message.
func checkSecrets(what string) func([]string) error {
	return func(secrets []string) error {
		for _, s := range secrets {
			if len(s) < minSecretLen {
				return fmt.Errorf("%s must be at least %d characters", what, minSecretLen)
			}
		}
		return nil
	}
}

// parseServeConfig reads flags over environment over defaults. A bad value
// is a *usageError naming the flag or variable; -h is flag.ErrHelp with the
// usage written to help.
func parseServeConfig(args []string, getenv func(string) string, help io.Writer) (serveConfig, error) {
	c := serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := make([]configValue, len(serveFlags))
	for i, f := range serveFlags {
		values[i] = f.bind(&c)
		fs.Var(values[i], f.name, f.usage)
	}
	for i, f := range serveFlags {
		if v := getenv(f.env); v != "" {
			if err := values[i].Set(v); err != nil {
				what := fmt.Sprintf("%q for %s (--%s)", v, f.env, f.name)
				if f.secret {
					what = fmt.Sprintf("for %s (--%s)", f.env, f.name)
				}
				return c, invalidValue(what, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeServeUsage(help, fs)
			return c, err
		}
		msg := err.Error()
		if m := strings.Replace(msg, "for flag -", "for --", 1); m != msg {
			msg = m
		} else {
			msg = strings.Replace(msg, " for -", " for --", 1) // flag's words for a bool flag
		}
		return c, &usageError{msg}
	}
	if fs.NArg() > 0 {
		return c, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	for i, f := range serveFlags {
		if err := values[i].validate(); err != nil {
			what := fmt.Sprintf("%s for --%s", values[i].shown(), f.name)
			if f.secret {
				what = "for --" + f.name
			}
			return c, invalidValue(what, err)
		}
	}
	return c, readSecretFiles(&c)
}

// invalidValue is the one line that names a bad value: what it is and
// where it came from, then why it is wrong.
func invalidValue(what string, why error) error {
	return &usageError{fmt.Sprintf("invalid value %s: %v", what, why)}
}

// readSecretFiles reads --tokens-file and --fetch-token-keys-file into the
// lists they stand in for; giving a list both ways is a usage error.
func readSecretFiles(c *serveConfig) error {
	for _, f := range []struct {
		flag, path string
		into       *[]string
	}{
		{"tokens", c.TokensFile, &c.Tokens},
		{"fetch-token-keys", c.FetchTokenKeysFile, &c.FetchTokenKeys},
	} {
		if f.path == "" {
			continue
		}
		if len(*f.into) > 0 {
			inline, _ := lookupServeFlag(f.flag)
			file, _ := lookupServeFlag(f.flag + "-file")
			return &usageError{fmt.Sprintf("--%s and --%s (%s, %s) are both set: give one",
				inline.name, file.name, inline.env, file.env)}
		}
		secrets, err := readSecretsFile(f.path)
		if err != nil {
			return &usageError{fmt.Sprintf("invalid value %q for --%s-file: %v", f.path, f.flag, err)}
		}
		*f.into = secrets
	}
	return nil
}

// lookupServeFlag is the row of serveFlags with that name.
func lookupServeFlag(name string) (serveFlag, bool) {
	for _, f := range serveFlags {
		if f.name == name {
			return f, true
		}
	}
	return serveFlag{}, false
}

// writeServeUsage is -h: every flag with its value's name, usage, default
// and environment variable.
func writeServeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: refkeeper serve [flags]")
	fmt.Fprintln(w, "Every flag also reads its environment variable; the flag wins.")
	for _, f := range serveFlags {
		fl := fs.Lookup(f.name)
		kind, usage := flag.UnquoteUsage(fl)
		if !strings.Contains(f.usage, "`") {
			kind = fl.Value.(configValue).kind()
		}
		line := "  --" + f.name
		if kind != "" {
			line += " " + kind
		}
		def := f.defaultText
		if def == "" {
			def = fl.DefValue
		}
		if def != "" {
			usage += " (default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n    \t%s [%s]\n", line, usage, f.env)
	}
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

func splitTokens(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
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

// daysPattern is a duration written in days, which Go durations lack.
var daysPattern = regexp.MustCompile(`^([0-9]{1,6})d$`)

// durationError says which units a duration takes, and what a duration
// written in days is in hours: "7d" is the mistake people make.
func durationError(s string) error {
	msg := "not a duration: a number with a unit of ns, us, ms, s, m or h, like 90s, 2h or 168h (days are not a unit)"
	if m := daysPattern.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		days, _ := strconv.Atoi(m[1])
		msg += fmt.Sprintf("; %s is %dh", m[0], days*24)
	}
	return errors.New(msg)
}
