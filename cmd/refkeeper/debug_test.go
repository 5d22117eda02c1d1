package main

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// --debug-listen serves the profiles on its own address, without a token;
// the API's address never serves them.
func TestDebugListenerServesProfilesApart(t *testing.T) {
	r := testdata.StartRedis(t)
	debug := freeAddr(t)
	srv := startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--role", "api", "--debug-listen", debug)
	resp, err := http.Get("http://" + debug + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("debug listener answered %d, want 200", resp.StatusCode)
	}
	resp, err = http.Get(srv.base + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API address answered %d for a profile, want 404", resp.StatusCode)
	}
	if !strings.Contains(srv.logs.String(), "serving pprof profiles without a token") {
		t.Fatal("the unauthenticated profile listener was not logged")
	}
}

// /debug/pprof/cmdline shows the process's flags without the values of
// secret ones: --tokens and --fetch-token-keys in both spellings, and
// --redis without its password.
func TestDebugCmdlineHidesSecrets(t *testing.T) {
	const fetchKey = "fetch-key-0123456789abcdef"
	r := testdata.StartRedis(t)
	debug := freeAddr(t)
	startProcess(t, "--repos", t.TempDir(), "--redis", r.URL(), "--role", "api", "--debug-listen", debug,
		"--fetch-token-keys="+fetchKey) // startProcess gives --tokens <testToken>
	resp, err := http.Get("http://" + debug + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cmdline := string(raw)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cmdline answered %d", resp.StatusCode)
	}
	for _, secret := range []string{testToken, fetchKey} {
		if strings.Contains(cmdline, secret) {
			t.Fatalf("cmdline shows a secret: %q", cmdline)
		}
	}
	for _, want := range []string{"serve", "--tokens\x00REDACTED", "--fetch-token-keys=REDACTED", "--role\x00api", "--redis\x00" + r.URL()} {
		if !strings.Contains(cmdline, want) {
			t.Fatalf("cmdline %q lacks %q", cmdline, want)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"refkeeper", "serve", "--tokens", "-s3cr3t-s3cr3t-s3cr3t", "--demo", "--role", "all"},
			[]string{"refkeeper", "serve", "--tokens", "REDACTED", "--demo", "--role", "all"}},
		{[]string{"refkeeper", "serve", "-tokens=s3cr3t", "--listen=0.0.0.0:8080", "--demo=true"},
			[]string{"refkeeper", "serve", "-tokens=REDACTED", "--listen=0.0.0.0:8080", "--demo=true"}},
		// A flag this list does not know is hidden, value and all.
		{[]string{"refkeeper", "serve", "--gitlab-hook-token", "s3cr3t", "--shutdown-timeout", "25s"},
			[]string{"refkeeper", "serve", "--gitlab-hook-token", "REDACTED", "--shutdown-timeout", "25s"}},
		{[]string{"refkeeper", "serve", "--redis", "redis://alice:s3cr3t@cache:6379/0"},
			[]string{"refkeeper", "serve", "--redis", "redis://REDACTED@cache:6379/0"}},
		// What follows the flags is not shown either.
		{[]string{"refkeeper", "serve", "--role", "api", "s3cr3t", "--tokens"},
			[]string{"refkeeper", "serve", "--role", "api", "REDACTED", "REDACTED"}},
		{[]string{"refkeeper", "serve", "--", "s3cr3t"}, []string{"refkeeper", "serve", "REDACTED", "REDACTED"}},
		{[]string{"refkeeper", "serve", "--tokens"}, []string{"refkeeper", "serve", "--tokens"}},
	}
	for _, tt := range tests {
		if got := redactArgs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("redactArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
