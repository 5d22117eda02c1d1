package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refkeeper/refkeeper/testdata"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestServeConfigDefaults(t *testing.T) {
	c, err := parseServeConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Repos != "./data/repos" || c.RedisURL != "" || len(c.Tokens) != 0 ||
		c.Retention != 168*time.Hour || c.MaxAge != 720*time.Hour || c.GCInterval != 10*time.Minute ||
		c.Role != "all" || c.StaleLockAge != 5*time.Minute || c.ShutdownTimeout != 25*time.Second ||
		c.WorkerConcurrency != 4 || c.GitTimeout != time.Minute || c.GitLockTimeout != time.Second {
		t.Fatalf("defaults = %+v", c)
	}
}

// TestGitTimeoutsReachTheRoot: --git-timeout and --git-lock-timeout (and
// their variables) are what the repos root runs git with.
func TestGitTimeoutsReachTheRoot(t *testing.T) {
	c, err := parseServeConfig([]string{"--git-lock-timeout", "250ms"},
		env(map[string]string{"REFKEEPER_GIT_TIMEOUT": "2m", "REFKEEPER_GIT_LOCK_TIMEOUT": "3s"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	root := newRoot(c, t.TempDir(), nil)
	if root.GitTimeout != 2*time.Minute || root.LockTimeout != 250*time.Millisecond {
		t.Fatalf("root git timeout %v, lock timeout %v; want 2m and 250ms", root.GitTimeout, root.LockTimeout)
	}
}

func TestServeConfigFlagBeatsEnv(t *testing.T) {
	e := env(map[string]string{
		"REFKEEPER_LISTEN":     "127.0.0.1:9000",
		"REFKEEPER_RETENTION":  "2h",
		"REFKEEPER_API_TOKENS": "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
		"REFKEEPER_FETCH_URL":  "https://git.example.com/",
		"REFKEEPER_ROLE":       "worker",

		"REFKEEPER_SHUTDOWN_TIMEOUT":   "10s",
		"REFKEEPER_WORKER_CONCURRENCY": "16",
	})
	c, err := parseServeConfig([]string{"--retention", "90s", "--role", "api", "--worker-concurrency", "2"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, _, err := c.fetchBase(os.Hostname)
	if c.Listen != "127.0.0.1:9000" || c.Retention != 90*time.Second || c.Role != "api" ||
		len(c.Tokens) != 2 || c.Tokens[1] != "bbbbbbbbbbbbbbbb" || err != nil || base != "https://git.example.com" ||
		c.ShutdownTimeout != 10*time.Second || c.WorkerConcurrency != 2 {
		t.Fatalf("config = %+v, fetch base %q %v", c, base, err)
	}
}

// TestBadConfigExitsTwo checks every kind of bad value: exit status 2 and
// exactly one line on stderr naming the flag or variable.
func TestBadConfigExitsTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"bad duration", []string{"--retention", "soon"}, nil, "retention"},
		{"negative duration", []string{"--max-age", "-1h"}, nil, "max-age"},
		{"zero interval", []string{"--gc-interval", "0s"}, nil, "gc-interval"},
		{"zero git timeout", []string{"--git-timeout", "0s"}, nil, "git-timeout"},
		{"negative git lock timeout", nil, map[string]string{"REFKEEPER_GIT_LOCK_TIMEOUT": "-1s"}, "git-lock-timeout"},
		{"bad role", []string{"--role", "boss"}, nil, "role"},
		{"bad pack cache size", []string{"--pack-cache-max-bytes", "lots"}, nil, "pack-cache-max-bytes"},
		{"zero pack cache size", nil, map[string]string{"REFKEEPER_PACK_CACHE_MAX_BYTES": "0"}, "pack-cache-max-bytes"},
		{"zero pack cache age", []string{"--pack-cache-max-age", "0s"}, nil, "pack-cache-max-age"},
		{"bad listen", []string{"--listen", "nowhere"}, nil, "listen"},
		{"bad redis", []string{"--redis", "http://x"}, nil, "redis"},
		// A URL that does not parse must not show its user name or password
		// (alice, s3cr3t), not even the part that ended up elsewhere.
		{"redis password with a bad escape", []string{"--redis", "redis://alice:s3cr3t%zz@cache:6379/0"}, nil, "redis"},
		{"redis password with a space", []string{"--redis", "redis://alice:s3cr3t s3cr3t@cache:6379/0"}, nil, "redis"},
		{"redis password with a slash", []string{"--redis", "redis://alice:s3cr3t/s3cr3t@cache:6379/0"}, nil, "redis"},
		{"redis password of digits and a slash", []string{"--redis", "redis://alice:6379/s3cr3t@cache"}, nil, "redis"},
		{"redis password with a question mark", []string{"--redis", "redis://alice:s3cr3t?s3cr3t@cache:6379/0"}, nil, "redis"},
		{"redis bad port and a user", []string{"--redis", "redis://alice:s3cr3t@cache:63x79/0"}, nil, "redis"},
		{"sentinel password parameter", []string{"--redis", "redis+sentinel://s1:26x379?master_name=m&password=s3cr3t"}, nil, "redis"},
		{"sentinel password parameter, bad timeout", []string{"--redis", "redis+sentinel://s1:26379?master_name=m&password=s3cr3t&dial_timeout=soon"}, nil, "redis"},
		{"sentinel password parameter with an ampersand", []string{"--redis", "redis+sentinel://s1:26379?master_name=m&password=s3cr3t&s3cr3t"}, nil, "redis"},
		{"redis password in env", nil, map[string]string{"REFKEEPER_REDIS_URL": "redis://alice:s3cr3t%zz@cache:6379/0"}, "redis"},
		{"bad fetch url", []string{"--fetch-url", "ftp://x"}, nil, "fetch-url"},
		{"bad debug listen", []string{"--debug-listen", "localhost"}, nil, "debug-listen"},
		{"short token", []string{"--tokens", "abc"}, nil, "tokens"},
		{"short fetch key", []string{"--fetch-token-keys", "abc"}, nil, "fetch-token-keys"},
		{"bad env", nil, map[string]string{"REFKEEPER_GC_INTERVAL": "often"}, "REFKEEPER_GC_INTERVAL"},
		{"bad trusted proxy", []string{"--trusted-proxies", "10.0.0.0/8,balancer"}, nil, "trusted-proxies"},
		{"extra argument", []string{"now"}, nil, "now"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, nil, "shutdown-timeout"},
		{"bad shutdown timeout env", nil, map[string]string{"REFKEEPER_SHUTDOWN_TIMEOUT": "soon"}, "REFKEEPER_SHUTDOWN_TIMEOUT"},
		{"zero worker concurrency", []string{"--worker-concurrency", "0"}, nil, "worker-concurrency"},
		{"bad worker concurrency", []string{"--worker-concurrency", "many"}, nil, "worker-concurrency"},
		{"tokens and tokens file", []string{"--tokens", "aaaaaaaaaaaaaaaa", "--tokens-file", "/nonexistent"}, nil, "--tokens-file"},
		{"tokens env and tokens file flag", []string{"--tokens-file", "/nonexistent"}, map[string]string{"REFKEEPER_API_TOKENS": "aaaaaaaaaaaaaaaa"}, "--tokens-file"},
		{"missing tokens file", []string{"--tokens-file", "/nonexistent/tokens"}, nil, "tokens-file"},
		{"keys and keys file", []string{"--fetch-token-keys-file", "/nonexistent"}, map[string]string{"REFKEEPER_FETCH_TOKEN_KEYS": "aaaaaaaaaaaaaaaa"}, "--fetch-token-keys-file"},
		{"missing keys file", []string{"--fetch-token-keys-file", "/nonexistent/keys"}, nil, "fetch-token-keys-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"serve"}, tt.args...), env(tt.env), &stdout, &stderr)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr = %q, want one line naming %q", stderr.String(), tt.want)
			}
			for _, secret := range []string{"alice", "s3cr3t"} {
				if strings.Contains(stderr.String()+stdout.String(), secret) {
					t.Fatalf("the message shows a secret (%s): %q", secret, stderr.String())
				}
			}
		})
	}
}

func TestTrustedProxiesConfig(t *testing.T) {
	c, err := parseServeConfig(nil, env(map[string]string{"REFKEEPER_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32,192.0.2.1"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.TrustedProxies) != "[10.0.0.0/8 2001:db8::/32 192.0.2.1/32]" {
		t.Fatalf("trusted proxies = %v", c.TrustedProxies)
	}
}

func TestRedisURLForms(t *testing.T) {
	tests := []struct {
		url     string
		addrs   int
		cluster bool
		master  string
		ok      bool
	}{
		{"redis://127.0.0.1:6379/2", 1, false, "", true},
		{"rediss://user:pw@cache:6380/0", 1, false, "", true},
		{"redis://alice:s3%2Fcr3t%40x@cache:6379/0", 1, false, "", true},
		{"redis+sentinel://:pw@s1:26379?master_name=main&password=pw2", 1, false, "main", true},
		{"redis+sentinel://s1:26379?addr=s2:26379&master_name=main", 2, false, "main", true},
		{"redis+cluster://c1:6379?addr=c2:6379&addr=c3:6379", 3, true, "", true},
		{"redis+sentinel://s1:26379", 0, false, "", false},
		{"redis+bogus://x:1", 0, false, "", false},
		{"http://x:1", 0, false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			o, err := redisOptions(tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("redisOptions = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if len(o.Addrs) != tt.addrs || o.IsClusterMode != tt.cluster || o.MasterName != tt.master {
				t.Fatalf("options = %+v", o)
			}
			if o.ReadTimeout <= 0 || o.ReadTimeout > 5*time.Second {
				t.Fatalf("read timeout %v: a Redis outage must fail fast", o.ReadTimeout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, env(nil), &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "refkeeper ") || !strings.Contains(out.String(), "libgit2 1.") {
		t.Fatalf("version = %q", out.String())
	}
}

// An unspecified listen host (what a container listens on) is never put
// into fetch_url: the machine's host name takes its place, and without one
// the process refuses to start.
func TestFetchBase(t *testing.T) {
	named := func() (string, error) { return "ci-box", nil }
	nameless := func() (string, error) { return "", errors.New("no name") }
	tests := []struct {
		listen, fetchURL string
		hostname         func() (string, error)
		want             string
		guessed, fails   bool
	}{
		{"127.0.0.1:8080", "", named, "http://127.0.0.1:8080", false, false},
		{"[::1]:8080", "", named, "http://[::1]:8080", false, false},
		{"refkeeper.internal:8080", "", named, "http://refkeeper.internal:8080", false, false},
		{"0.0.0.0:8080", "", named, "http://ci-box:8080", true, false},
		{"[::]:8080", "", named, "http://ci-box:8080", true, false},
		{":8080", "", named, "http://ci-box:8080", true, false},
		{"0.0.0.0:8080", "https://git.example.com/", nameless, "https://git.example.com", false, false},
		{"0.0.0.0:8080", "", nameless, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.listen+" "+tt.fetchURL, func(t *testing.T) {
			c := serveConfig{Listen: tt.listen, FetchURL: tt.fetchURL}
			base, guessed, err := c.fetchBase(tt.hostname)
			var ferr *fetchURLError
			if tt.fails != errors.As(err, &ferr) || base != tt.want || guessed != tt.guessed {
				t.Fatalf("fetchBase = %q, %v, %v; want %q, %v, fails %v", base, guessed, err, tt.want, tt.guessed, tt.fails)
			}
			if tt.fails && !strings.Contains(err.Error(), "--fetch-url") {
				t.Fatalf("the error does not say what to set: %v", err)
			}
		})
	}
}

func TestTokensFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "# API tokens of the CI orchestrators\n\naaaaaaaaaaaaaaaa\n  bbbbbbbbbbbbbbbb  # the old one, until Friday\r\n")
	for _, src := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--tokens-file", good}, nil},
		{"env", nil, map[string]string{"REFKEEPER_API_TOKENS_FILE": good}},
	} {
		t.Run(src.name, func(t *testing.T) {
			c, err := parseServeConfig(src.args, env(src.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Tokens) != 2 || c.Tokens[0] != "aaaaaaaaaaaaaaaa" || c.Tokens[1] != "bbbbbbbbbbbbbbbb" || c.TokensFile != good {
				t.Fatalf("tokens = %q from %q", c.Tokens, c.TokensFile)
			}
			if len(c.FetchTokenKeys) != 0 {
				t.Fatalf("fetch-token keys = %q, want none", c.FetchTokenKeys)
			}
		})
	}

	// The keys file is read the same way, in order (the first signs).
	c, err := parseServeConfig(nil, env(map[string]string{"REFKEEPER_FETCH_TOKEN_KEYS_FILE": good}), &bytes.Buffer{})
	if err != nil || len(c.FetchTokenKeys) != 2 || c.FetchTokenKeys[0] != "aaaaaaaaaaaaaaaa" || len(c.Tokens) != 0 {
		t.Fatalf("fetch-token keys = %q, tokens %q, err %v", c.FetchTokenKeys, c.Tokens, err)
	}

	// A bad file is a usage error that names the line, never its text.
	for _, bad := range []struct{ name, text, want string }{
		{"empty", "# nothing yet\n\n", "nothing in it"},
		{"short", "aaaaaaaaaaaaaaaa\ns3cr3t\n", "line 2"},
		{"two on a line", "s3cr3t-s3cr3t-s3cr3t s3cr3t-s3cr3t-s3cr3u\n", "line 1"},
		{"comma list", "s3cr3t-s3cr3t-s3cr3t,s3cr3t-s3cr3t-s3cr3u\n", "line 1"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			path := write(bad.name, bad.text)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"serve", "--tokens-file", path}, env(nil), &stdout, &stderr)
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], "--tokens-file") || !strings.Contains(lines[0], bad.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming --tokens-file and %q", code, stderr.String(), bad.want)
			}
			if strings.Contains(stderr.String(), "s3cr3t") {
				t.Fatalf("the message shows a token: %q", stderr.String())
			}
		})
	}
}

// --worker-concurrency reaches the task server (asynq's own record of it
// in Redis).
func TestWorkerConcurrencyFlag(t *testing.T) {
	r := testdata.StartRedis(t)
	startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--role", "worker", "--worker-concurrency", "7")
	inspector := asynq.NewInspectorFromRedisClient(r.Client(t))
	var seen []int
	testdata.WaitFor(t, "the worker's heartbeat", 20*time.Second, func() bool {
		servers, err := inspector.Servers()
		seen = seen[:0]
		for _, s := range servers {
			seen = append(seen, s.Concurrency)
		}
		return err == nil && len(servers) > 0
	})
	if len(seen) != 1 || seen[0] != 7 {
		t.Fatalf("task servers run with concurrency %v, want [7]", seen)
	}
}

// TestBadDurationNamesUnits: a duration in days, which Go durations lack,
// is refused with the units that work and the same span in hours.
func TestBadDurationNamesUnits(t *testing.T) {
	for _, tt := range []struct{ args, want []string }{
		{[]string{"--retention", "7d"}, []string{"--retention", "168h", "ns, us, ms, s, m or h", "7d is 168h"}},
		{[]string{"--max-age", "soon"}, []string{"--max-age", "168h", "ns, us, ms, s, m or h"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"serve"}, tt.args...), env(nil), &stdout, &stderr)
		line := strings.TrimRight(stderr.String(), "\n")
		if code != exitUsage || strings.Contains(line, "\n") {
			t.Fatalf("%v: exit %d, stderr %q; want 2 and one line", tt.args, code, stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(line, w) {
				t.Errorf("%v: %q does not say %q", tt.args, line, w)
			}
		}
	}
}

// TestPackCacheConfig: the cache's directory defaults to pack-cache next
// to the repos root, "off" turns it off; sizes read with or without a
// unit.
func TestPackCacheConfig(t *testing.T) {
	c, err := parseServeConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.packCacheDir("/srv/refkeeper/repos"); got != "/srv/refkeeper/pack-cache" {
		t.Errorf("default pack cache dir %q", got)
	}
	if c.PackCacheMaxBytes != 10<<30 || c.PackCacheMaxAge != 10*time.Minute {
		t.Errorf("defaults %d %v, want 10GiB and 10m", c.PackCacheMaxBytes, c.PackCacheMaxAge)
	}
	c, err = parseServeConfig([]string{"--pack-cache-dir", "off", "--pack-cache-max-bytes", "500MB"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.packCacheDir("/srv/refkeeper/repos"); got != "" {
		t.Errorf("--pack-cache-dir off: %q", got)
	}
	for in, want := range map[string]int64{"500MB": 500e6, "1GiB": 1 << 30, "1234": 1234, "2 KiB": 2048} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if c.PackCacheMaxBytes != 500e6 {
		t.Errorf("--pack-cache-max-bytes 500MB read as %d", c.PackCacheMaxBytes)
	}
}
