package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the refkeeper binary the tests built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

// testToken is the API token of the servers main's tests talk to.
const testToken = "test-token-0123456789abcdef"

// startServer runs the binary's serve with the test token and args: the
// server the CLI's commands meet, as in a job.
func startServer(tb testing.TB, args ...string) *testdata.Server {
	tb.Helper()
	return testdata.StartServer(tb, append([]string{"--tokens", testToken}, args...)...)
}

// TestClientCommandsDispatch: the server binary runs every client command
// of package cli (each answers -h with its own usage) and leaves an unknown
// command to cli's one line.
func TestClientCommandsDispatch(t *testing.T) {
	for _, name := range []string{"pin", "finish", "get", "list", "delete", "close", "gc", "projects", "checkout"} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{name, "-h"}, func(string) string { return "" }, &stdout, &stderr)
		if code != exitOK || !strings.Contains(stderr.String(), "usage: refkeeper "+name) {
			t.Errorf("%s -h = %d\n%s", name, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"frobnicate"}, func(string) string { return "" }, &stdout, &stderr); code != exitUsage ||
		stderr.String() != "refkeeper: unknown command \"frobnicate\" (try 'refkeeper help')\n" {
		t.Errorf("unknown command = %d %q", code, stderr.String())
	}
}
