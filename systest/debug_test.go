package systest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// --debug-listen serves the profiles on its own address, without a token;
// the API's address never serves them.
func TestDebugListenerServesProfilesApart(t *testing.T) {
	r := testdata.StartRedis(t)
	debug := testdata.FreeAddr(t)
	srv := startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--role", "api", "--debug-listen", debug)
	resp, err := http.Get("http://" + debug + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("debug listener answered %d, want 200", resp.StatusCode)
	}
	resp, err = http.Get(srv.Base + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API address answered %d for a profile, want 404", resp.StatusCode)
	}
	if !strings.Contains(srv.Logs.String(), "serving pprof profiles without a token") {
		t.Fatal("the unauthenticated profile listener was not logged")
	}
}

// /debug/pprof/cmdline shows the process's flags without the values of
// secret ones: --tokens and --fetch-token-keys in both spellings, and
// --redis without its password.
func TestDebugCmdlineHidesSecrets(t *testing.T) {
	const fetchKey = "fetch-key-0123456789abcdef"
	r := testdata.StartRedis(t)
	debug := testdata.FreeAddr(t)
	startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--role", "api", "--debug-listen", debug,
		"--fetch-token-keys="+fetchKey) // startServer gives --tokens <testToken>
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
