package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
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
		c.Role != "all" || c.fetchBase() != "http://127.0.0.1:8080" || c.StaleLockAge != 5*time.Minute ||
		c.GitTimeout != time.Minute || c.GitLockTimeout != time.Second {
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
	})
	c, err := parseServeConfig([]string{"--retention", "90s", "--role", "api"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.Retention != 90*time.Second || c.Role != "api" ||
		len(c.Tokens) != 2 || c.Tokens[1] != "bbbbbbbbbbbbbbbb" || c.fetchBase() != "https://git.example.com" {
		t.Fatalf("config = %+v", c)
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
		{"extra argument", []string{"now"}, nil, "now"},
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
