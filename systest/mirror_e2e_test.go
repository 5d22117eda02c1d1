package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMirrorEndToEnd runs the binary's serve with --credentials: a mirror
// of a real upstream is registered, cloned, pinned and fetched by a runner;
// the server restarts on an emptied Redis and still knows it; it is deleted.
func TestMirrorEndToEnd(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root) // the local project group/app
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := u.CredentialsFile(t, "gh")
	args := []string{"--repos", root, "--redis", r.URL(), "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams, "--upstream-timeout", "30s"}
	srv := startServer(t, args...)
	const api = "/api/v1/projects/mirrors%2Fgh"

	srv.registerMirror(t, api, fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "gh"}`, u.URL()))
	code, pin := srv.call(t, "PUT", api+"/pipelines/7/ref", `{"merge_request_iid": 1}`)
	if code != 201 || pin["sha"] != u.Merge {
		t.Fatalf("pin = %d %v, want 201 at %s", code, pin, u.Merge)
	}
	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q"); err != nil {
		t.Fatal(out)
	}
	if out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken,
		"fetch", "--depth=1", pin["fetch_url"].(string), pin["refspec"].(string)); err != nil {
		t.Fatalf("runner fetch: %v\n%s", err, out)
	}
	if out, _ := testdata.RunnerGit(t, work, "rev-parse", "refs/pipelines/7"); strings.TrimSpace(out) != u.Merge {
		t.Errorf("runner got %q, want %s", out, u.Merge)
	}

	// Redis loses everything and the server restarts: the mirror is known.
	srv.Stop(t)
	firstLogs := srv.Logs.String()
	r.FlushAll(t)
	srv = startServer(t, args...)
	code, pj := srv.call(t, "GET", api, "")
	if code != 200 || pj["kind"] != "mirror" || pj["upstream"] != u.URL() || pj["host"] != "github" || pj["credential"] != "gh" {
		t.Fatalf("after restart on an empty Redis: %d %v", code, pj)
	}
	code, list := srv.call(t, "GET", "/api/v1/projects?limit=1", "")
	projects, _ := list["projects"].([]any)
	if code != 200 || len(projects) != 1 || list["next_cursor"] != "group/app" {
		t.Fatalf("first page = %d %v, want group/app and a cursor", code, list)
	}
	code, list = srv.call(t, "GET", "/api/v1/projects?limit=1&cursor=group%2Fapp", "")
	projects, _ = list["projects"].([]any)
	if code != 200 || len(projects) != 1 || projects[0].(map[string]any)["project"] != "mirrors/gh" || list["next_cursor"] != nil {
		t.Fatalf("second page = %d %v, want mirrors/gh and no cursor", code, list)
	}
	if code, _ := srv.call(t, "DELETE", api, ""); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	if code, _ := srv.call(t, "GET", api, ""); code != 404 {
		t.Fatalf("GET after DELETE = %d", code)
	}
	if strings.Contains(firstLogs+srv.Logs.String(), testdata.UpstreamPassword) {
		t.Errorf("the server's log shows the upstream password")
	}
}

// TestMirrorUpstreamPolicyEndToEnd: the built binary, as an attacker with an
// API token would drive it. With the defaults a loopback upstream, the
// metadata service and a local path are 403 upstream_not_allowed; with
// loopback allowed, a credential server of the caller's own (answering 401
// Basic and recording what it gets) receives no credential whatever is
// registered: a credential for other hosts, for other projects, or a
// redirect to it. Each refusal answers the same message.
func TestMirrorUpstreamPolicyEndToEnd(t *testing.T) {
	r := testdata.StartRedis(t)
	trap := testdata.StartCredentialTrap(t)
	rd := testdata.StartRedirector(t, trap.Host())
	creds := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(creds, []byte(`{
		"elsewhere": {"username": "bot", "password": "leak-1-elsewhere", "hosts": ["github.com"]},
		"acme": {"username": "bot", "password": "leak-2-acme", "hosts": ["`+trap.Host()+`"], "projects": ["acme/*"]},
		"redirector": {"username": "bot", "password": "leak-3-redirect", "hosts": ["`+rd.Host()+`"]}
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	defaults := startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--credentials", creds)
	var messages []string
	for _, up := range []string{trap.URL(), "http://169.254.169.254/latest/meta-data/", "file:///etc/x.git",
		strings.Replace(trap.URL(), "127.0.0.1", "localhost", 1)} {
		code, body := defaults.call(t, "PUT", "/api/v1/projects/mirrors%2Fx", fmt.Sprintf(`{"upstream": %q}`, up))
		e, _ := body["error"].(map[string]any)
		if code != 403 || e["code"] != "upstream_not_allowed" {
			t.Errorf("default policy, %s: %d %v, want 403 upstream_not_allowed", up, code, body)
		}
		msg, _ := e["message"].(string)
		messages = append(messages, strings.Replace(msg, up, "URL", 1))
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("refusals tell reasons apart: %q vs %q", m, messages[0])
		}
	}

	srv := startServer(t, "--repos", t.TempDir(), "--redis", r.URL(), "--credentials", creds,
		"--upstream-allow", testdata.LoopbackUpstreams)
	for _, tc := range []struct{ project, upstream, credential string }{
		{"mirrors%2Fa", trap.URL(), "elsewhere"},
		{"mirrors%2Fb", trap.URL(), "acme"},
	} {
		code, body := srv.call(t, "PUT", "/api/v1/projects/"+tc.project,
			fmt.Sprintf(`{"upstream": %q, "credential": %q}`, tc.upstream, tc.credential))
		if code != 403 {
			t.Errorf("credential %s for %s: %d %v, want 403", tc.credential, tc.project, code, body)
		}
	}
	if code, body := srv.call(t, "PUT", "/api/v1/projects/mirrors%2Fc",
		fmt.Sprintf(`{"upstream": %q, "credential": "redirector"}`, rd.URL())); code != 202 {
		t.Fatalf("register the redirector: %d %v", code, body)
	}
	var pj map[string]any
	testdata.WaitFor(t, "the clone through a redirect", 30*time.Second, func() bool {
		_, pj = srv.call(t, "GET", "/api/v1/projects/mirrors%2Fc", "")
		return pj["state"] != "cloning"
	})
	if msg, _ := pj["last_error"].(string); pj["state"] != "failed" || !strings.Contains(msg, "not allowed") {
		t.Errorf("clone through a redirect: %v, want failed, not allowed", pj)
	}
	if rd.Requests() == 0 {
		t.Error("the redirector was never asked")
	}
	if got := trap.Authorizations(); len(got) != 0 {
		t.Fatalf("the trap received credentials: %q", got)
	}
	if n := trap.Requests(); n != 0 {
		t.Errorf("the trap was reached %d times", n)
	}
	for _, logs := range []string{defaults.Logs.String(), srv.Logs.String()} {
		if strings.Contains(logs, "leak-") {
			t.Errorf("a log line shows a password:\n%s", logs)
		}
	}
}
