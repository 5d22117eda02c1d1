package main

import (
	"net/http"
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
