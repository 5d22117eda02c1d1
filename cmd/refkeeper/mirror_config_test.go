package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMirrorFlags(t *testing.T) {
	c, err := parseServeConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamTimeout != 60*time.Second || c.Credentials != "" || c.UpstreamAllow != "https://*" {
		t.Fatalf("defaults: upstream timeout %s, credentials %q, upstream allow %q; want 60s, none and https://*", c.UpstreamTimeout, c.Credentials, c.UpstreamAllow)
	}
	creds := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(creds, []byte(`{"gl": {"username": "bot", "password": "s3cr3t", "hosts": ["gitlab.com"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = parseServeConfig([]string{"--upstream-timeout", "5s"},
		env(map[string]string{"REFKEEPER_UPSTREAM_TIMEOUT": "9s", "REFKEEPER_CREDENTIALS": creds,
			"REFKEEPER_UPSTREAM_ALLOW": "https://*.example.com,file:///srv/git/"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamAllow != "https://*.example.com,file:///srv/git/" {
		t.Fatalf("upstream allow = %q, want the env's", c.UpstreamAllow)
	}
	if c.UpstreamTimeout != 5*time.Second || c.Credentials != creds {
		t.Fatalf("config = %s %q, want the flag's 5s and the env's file", c.UpstreamTimeout, c.Credentials)
	}
}

func TestBadMirrorFlagsExitTwo(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	// Not JSON: the message must say where, never quote the file.
	if err := os.WriteFile(broken, []byte(`{"gl": {"username": "bot", "password": s3cr3t}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	incomplete := filepath.Join(dir, "incomplete.json")
	if err := os.WriteFile(incomplete, []byte(`{"gl": {"username": "bot"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A credential that could go anywhere is refused at start.
	unbound := filepath.Join(dir, "unbound.json")
	if err := os.WriteFile(unbound, []byte(`{"gl": {"username": "bot", "password": "s3cr3t"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"zero timeout":              {"--upstream-timeout", "0s"},
		"bad timeout":               {"--upstream-timeout", "soon"},
		"missing file":              {"--credentials", filepath.Join(dir, "none.json")},
		"not JSON":                  {"--credentials", broken},
		"entry without pass":        {"--credentials", incomplete},
		"entry without hosts":       {"--credentials", unbound},
		"bad upstream pattern":      {"--upstream-allow", "ssh://*"},
		"file pattern not absolute": {"--upstream-allow", "file://srv/git"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"serve"}, args...), env(nil), &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], strings.TrimPrefix(args[0], "--")) {
				t.Fatalf("stderr = %q, want one line naming %s", stderr.String(), args[0])
			}
			if strings.Contains(stderr.String(), "s3cr3t") {
				t.Fatalf("the message quotes the secret: %q", stderr.String())
			}
		})
	}
}
