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
