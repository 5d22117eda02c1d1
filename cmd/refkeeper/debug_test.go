package main

import (
	"slices"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"refkeeper", "serve", "--tokens", "-s3cr3t-s3cr3t-s3cr3t", "--demo", "--role", "all"},
			[]string{"refkeeper", "serve", "--tokens", "REDACTED", "--demo", "--role", "all"}},
		{[]string{"refkeeper", "serve", "-tokens=s3cr3t", "--listen=0.0.0.0:8080", "--demo=true"},
			[]string{"refkeeper", "serve", "-tokens=REDACTED", "--listen=0.0.0.0:8080", "--demo=true"}},
		{[]string{"refkeeper", "serve", "--gitlab-hook-token", "s3cr3t", "--shutdown-timeout", "25s"},
			[]string{"refkeeper", "serve", "--gitlab-hook-token", "REDACTED", "--shutdown-timeout", "25s"}},
		// A flag serve does not know is hidden, value and all.
		{[]string{"refkeeper", "serve", "--not-a-flag", "s3cr3t"},
			[]string{"refkeeper", "serve", "--not-a-flag", "REDACTED"}},
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

// Every flag of the table is shown or hidden as its row says: a secret
// flag's value never reaches /debug/pprof/cmdline, every other one does.
func TestRedactArgsFollowsTheFlagTable(t *testing.T) {
	for _, f := range serveFlags {
		if f.name == "redis" || boolFlag(f.name) {
			continue // redis: its URL's credentials only (above); bools take no value
		}
		got := redactArgs([]string{"refkeeper", "serve", "--" + f.name, "value-of-" + f.name})
		want := "value-of-" + f.name
		if f.secret {
			want = redacted
		}
		if got[3] != want {
			t.Errorf("--%s (secret %v) shows %q, want %q", f.name, f.secret, got[3], want)
		}
	}
}
