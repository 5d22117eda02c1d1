package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

const token = "api-test-token-0123456789"

type fixture struct {
	srv           *httptest.Server
	git           *testdata.Repo
	redis         *testdata.Redis
	c1, c2, merge string
}

// newFixture serves group/app (testdata.NewMergeRequestProject) over the
// API, with a real redis-server; configure changes the API's config.
func newFixture(t *testing.T, configure ...func(*api.Config)) *fixture {
	t.Helper()
	fx := refstest.New(t)
	g, r := fx.Git, fx.Redis
	srv := httptest.NewUnstartedServer(nil)
	cfg := api.Config{Pins: fx.Service, Tokens: []string{token}, FetchURL: "http://" + srv.Listener.Addr().String()}
	for _, fn := range configure {
		fn(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, git: g.Repo, redis: r, c1: g.First, c2: g.Second, merge: g.Merge}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) errCode() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer) errMessage() string {
	e, _ := a.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// do sends a request; headers are "Name: value" strings; the token is added
// unless a header says otherwise.
func (f *fixture) do(t *testing.T, method, path, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: %d with a non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	return a
}

const p = "/api/v1/projects/group%2Fapp"

func TestEndpoints(t *testing.T) {
	f := newFixture(t)
	a := f.do(t, "PUT", p+"/pipelines/7/ref", `{"sha":"`+f.c1+`","merge_request_iid":12}`)
	if a.status != 201 {
		t.Fatalf("pin = %d %s", a.status, a.raw)
	}
	want := map[string]any{
		"project": "group/app", "pipeline_id": float64(7), "ref": "refs/pipelines/7", "sha": f.c1,
		"refspec": "+refs/pipelines/7:refs/pipelines/7", "fetch_url": f.srv.URL + "/git/group/app.git",
		"merge_request_iid": float64(12), "state": "pinned", "finished_at": nil, "expires_at": nil,
	}
	for k, v := range want {
		if a.body[k] != v {
			t.Errorf("pin[%s] = %v, want %v", k, a.body[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, a.body["created_at"].(string)); err != nil {
		t.Errorf("created_at: %v", err)
	}

	steps := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"re-pin", "PUT", p + "/pipelines/7/ref", `{"sha":"` + f.c1 + `"}`, 200, ""},
		{"conflict", "PUT", p + "/pipelines/7/ref", `{"sha":"` + f.c2 + `"}`, 409, "ref_conflict"},
		{"by merge request", "PUT", p + "/pipelines/8/ref", `{"merge_request_iid":12}`, 201, ""},
		{"no merge ref", "PUT", p + "/pipelines/9/ref", `{"merge_request_iid":13}`, 422, "merge_ref_not_found"},
		{"missing commit", "PUT", p + "/pipelines/9/ref", `{"sha":"1234567890123456789012345678901234567890"}`, 422, "commit_not_found"},
		{"no project", "PUT", "/api/v1/projects/nope/pipelines/9/ref", `{"sha":"` + f.c1 + `"}`, 404, "project_not_found"},
		{"get", "GET", p + "/pipelines/7/ref", "", 200, ""},
		{"get missing", "GET", p + "/pipelines/99/ref", "", 404, "pin_not_found"},
		{"finish", "POST", p + "/pipelines/7/finish", `{"status":"success"}`, 200, ""},
		{"finish without body", "POST", p + "/pipelines/8/finish", "", 200, ""},
		{"finish missing", "POST", p + "/pipelines/99/finish", "", 404, "pin_not_found"},
		{"list", "GET", p + "/pipelines?state=finished&limit=1", "", 200, ""},
		{"list bad state", "GET", p + "/pipelines?state=gone", "", 400, "invalid_request"},
		{"list bad limit", "GET", p + "/pipelines?limit=0", "", 400, "invalid_request"},
		{"close", "POST", p + "/merge_requests/12/close", "", 200, ""},
		{"gc", "POST", "/api/v1/gc", "", 200, ""},
		{"delete", "DELETE", p + "/pipelines/7/ref", "", 204, ""},
		{"delete missing", "DELETE", p + "/pipelines/99/ref", "", 404, "pin_not_found"},
	}
	for _, s := range steps {
		a := f.do(t, s.method, s.path, s.body)
		if a.status != s.status || a.errCode() != s.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", s.name, a.status, a.errCode(), s.status, s.code, a.raw)
		}
	}
	if sha, ok := f.git.RefSHA(t, "refs/pipelines/7"); ok {
		t.Errorf("refs/pipelines/7 still at %s after DELETE", sha)
	}
	// Pipeline 8 (merge request 12) was finished, its merge request closed,
	// and the sweep deleted it.
	if sha, ok := f.git.RefSHA(t, "refs/pipelines/8"); ok {
		t.Errorf("refs/pipelines/8 still at %s after close and gc", sha)
	}
	list := f.do(t, "GET", p+"/pipelines?state=deleted&limit=1", "")
	if pins := list.body["pins"].([]any); len(pins) != 1 || list.body["next_cursor"] == nil {
		t.Errorf("deleted list, page 1 = %s", list.raw)
	}
	next := f.do(t, "GET", p+"/pipelines?state=deleted&limit=1&cursor="+list.body["next_cursor"].(string), "")
	if pins := next.body["pins"].([]any); len(pins) != 1 || next.body["next_cursor"] != nil ||
		pins[0].(map[string]any)["pipeline_id"] == list.body["pins"].([]any)[0].(map[string]any)["pipeline_id"] {
		t.Errorf("deleted list, page 2 = %s", next.raw)
	}
	gc := f.do(t, "POST", "/api/v1/gc", "")
	for _, k := range []string{"deleted", "adopted", "kept", "duration_ms"} {
		if _, ok := gc.body[k].(float64); !ok {
			t.Errorf("gc answer lacks %s: %s", k, gc.raw)
		}
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, auth string
		status     int
	}{
		{"missing", "Authorization: ", 401},
		{"wrong", "Authorization: Bearer nope", 401},
		{"not bearer", "Authorization: Token " + token, 401},
		{"basic on the API", "Authorization: Basic eDp4", 401},
		{"right", "Authorization: Bearer " + token, 404},
	}
	for _, tt := range tests {
		a := f.do(t, "GET", p+"/pipelines/1/ref", "", tt.auth)
		if a.status != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, a.status, tt.status)
		}
		if tt.status == 401 && (a.errCode() != "unauthorized" || a.header.Get("WWW-Authenticate") == "") {
			t.Errorf("%s: body %s, WWW-Authenticate %q", tt.name, a.raw, a.header.Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s without token: %d", path, resp.StatusCode)
		}
		if strings.Contains(string(body), token) {
			t.Errorf("%s reveals the token", path)
		}
	}
}

// TestBadInput: every bad request gets a 4xx with the JSON error body, and
// leaves no pipeline ref behind.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	tree := f.git.TreeOf(t, f.c1)
	blob := f.git.BlobOf(t, f.c1, "app.txt")
	tag := f.git.AnnotatedTag(t, "v1", f.c1)
	good := `{"sha":"` + f.c1 + `"}`
	big := `{"sha":"` + f.c1 + `","x":"` + strings.Repeat("a", 70<<10) + `"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		{"id 0", "PUT", p + "/pipelines/0/ref", good, nil, 400, "invalid_request"},
		{"id -1", "PUT", p + "/pipelines/-1/ref", good, nil, 400, "invalid_request"},
		{"id 01", "PUT", p + "/pipelines/01/ref", good, nil, 400, "invalid_request"},
		{"id +1", "PUT", p + "/pipelines/+1/ref", good, nil, 400, "invalid_request"},
		{"id 1e3", "PUT", p + "/pipelines/1e3/ref", good, nil, 400, "invalid_request"},
		{"id 0x10", "PUT", p + "/pipelines/0x10/ref", good, nil, 400, "invalid_request"},
		{"id 2^63", "PUT", p + "/pipelines/9223372036854775808/ref", good, nil, 400, "invalid_request"},
		{"traversal", "PUT", "/api/v1/projects/..%2F..%2Fetc/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"encoded dots", "PUT", "/api/v1/projects/%2E%2E/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"absolute", "PUT", "/api/v1/projects/%2Fetc%2Fpasswd/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"NUL", "PUT", "/api/v1/projects/group%00app/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"trailing slash", "PUT", "/api/v1/projects/group%2F/pipelines/1/ref", good, nil, 400, "invalid_request"},
		// Decoded once: %252F is a "%2F" in the name, which no name has.
		{"double-encoded slash", "PUT", "/api/v1/projects/group%252Fapp/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"double-encoded slash, lower case", "PUT", "/api/v1/projects/group%252fapp/pipelines/1/ref", good, nil, 400, "invalid_request"},
		{"short sha", "PUT", p + "/pipelines/1/ref", `{"sha":"` + f.c1[:39] + `"}`, nil, 400, "invalid_request"},
		{"non-hex sha", "PUT", p + "/pipelines/1/ref", `{"sha":"` + strings.Repeat("z", 40) + `"}`, nil, 400, "invalid_request"},
		{"HEAD", "PUT", p + "/pipelines/1/ref", `{"sha":"HEAD"}`, nil, 400, "invalid_request"},
		{"branch name", "PUT", p + "/pipelines/1/ref", `{"sha":"refs/heads/main"}`, nil, 400, "invalid_request"},
		{"tree", "PUT", p + "/pipelines/1/ref", `{"sha":"` + tree + `"}`, nil, 422, "commit_not_found"},
		{"blob", "PUT", p + "/pipelines/1/ref", `{"sha":"` + blob + `"}`, nil, 422, "commit_not_found"},
		{"annotated tag", "PUT", p + "/pipelines/1/ref", `{"sha":"` + tag + `"}`, nil, 422, "commit_not_found"},
		{"malformed JSON", "PUT", p + "/pipelines/1/ref", `{"sha":`, nil, 400, "invalid_request"},
		{"trailing data", "PUT", p + "/pipelines/1/ref", good + `{}`, nil, 400, "invalid_request"},
		{"unknown field", "PUT", p + "/pipelines/1/ref", `{"sha":"` + f.c1 + `","force":true}`, nil, 400, "invalid_request"},
		// Field names match exactly: encoding/json alone would take these for sha
		// and merge_request_iid (it folds case, also Unicode's: ſ is s, K is k).
		{"SHA in capitals", "PUT", p + "/pipelines/1/ref", `{"SHA":"` + f.c1 + `"}`, nil, 400, "invalid_request"},
		{"Sha", "PUT", p + "/pipelines/1/ref", `{"Sha":"` + f.c1 + `"}`, nil, 400, "invalid_request"},
		{"long s in sha", "PUT", p + "/pipelines/1/ref", `{"ſha":"` + f.c1 + `"}`, nil, 400, "invalid_request"},
		{"iid in mixed case", "PUT", p + "/pipelines/1/ref", `{"Merge_Request_IID":12}`, nil, 400, "invalid_request"},
		{"sha twice, once in capitals", "PUT", p + "/pipelines/1/ref", `{"sha":"` + f.c1 + `","SHA":"` + f.c2 + `"}`, nil, 400, "invalid_request"},
		{"finish Status", "POST", p + "/pipelines/1/finish", `{"Status":"success"}`, nil, 400, "invalid_request"},
		{"sha as number", "PUT", p + "/pipelines/1/ref", `{"sha":123}`, nil, 400, "invalid_request"},
		{"iid as string", "PUT", p + "/pipelines/1/ref", `{"merge_request_iid":"12"}`, nil, 400, "invalid_request"},
		{"iid float", "PUT", p + "/pipelines/1/ref", `{"merge_request_iid":1.5}`, nil, 400, "invalid_request"},
		{"iid zero", "PUT", p + "/pipelines/1/ref", `{"merge_request_iid":0}`, nil, 400, "invalid_request"},
		{"iid negative", "PUT", p + "/pipelines/1/ref", `{"merge_request_iid":-12}`, nil, 400, "invalid_request"},
		{"iid exponent", "PUT", p + "/pipelines/1/ref", `{"merge_request_iid":1e1}`, nil, 400, "invalid_request"},
		{"empty body", "PUT", p + "/pipelines/1/ref", ``, nil, 400, "invalid_request"},
		{"empty object", "PUT", p + "/pipelines/1/ref", `{}`, nil, 400, "invalid_request"},
		{"array", "PUT", p + "/pipelines/1/ref", `[]`, nil, 400, "invalid_request"},
		{"oversize", "PUT", p + "/pipelines/1/ref", big, nil, 413, "payload_too_large"},
		{"wrong content type", "PUT", p + "/pipelines/1/ref", good, []string{"Content-Type: text/plain"}, 415, "unsupported_media_type"},
		{"finish status number", "POST", p + "/pipelines/1/finish", `{"status":1}`, nil, 400, "invalid_request"},
		{"unknown route", "GET", "/api/v1/nothing", "", nil, 404, "not_found"},
		{"unknown top route", "GET", "/nothing", "", nil, 404, "not_found"},
		{"wrong method", "PATCH", p + "/pipelines/1/ref", good, nil, 405, "method_not_allowed"},
		{"wrong method gc", "GET", "/api/v1/gc", "", nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(t, tt.method, tt.path, tt.body, tt.headers...)
			if a.status != tt.status || a.errCode() != tt.code {
				t.Fatalf("%d %q, want %d %q: %s", a.status, a.errCode(), tt.status, tt.code, a.raw)
			}
			if msg, _ := a.body["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("no error message: %s", a.raw)
			}
		})
	}
	if left := f.git.Refs(t, "refs/pipelines/"); len(left) != 0 {
		t.Fatalf("bad requests left refs: %v", left)
	}
	if keys := f.redis.Client(t).Keys(t.Context(), "refkeeper:*").Val(); len(keys) != 0 {
		t.Fatalf("bad requests left records: %v", keys)
	}
}

func TestRedisDown(t *testing.T) {
	f := newFixture(t)
	f.redis.Stop(t)
	start := time.Now()
	a := f.do(t, "PUT", p+"/pipelines/1/ref", `{"sha":"`+f.c1+`"}`)
	if a.status != 503 || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("pin with Redis down = %d %s, Retry-After %q", a.status, a.raw, a.header.Get("Retry-After"))
	}
	if r := f.do(t, "GET", "/readyz", ""); r.status != 503 {
		t.Fatalf("readyz with Redis down = %d", r.status)
	}
	t.Logf("503 after %v", time.Since(start))
	f.redis.Start(t)
	if r := f.do(t, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz after Redis came back = %d %s", r.status, r.raw)
	}
}

// gitCLI runs the real git client as a runner, in a clean environment.
func gitCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	return gitCLIEnv(t, dir, nil, args...)
}

func gitCLIEnv(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestGitSmartHTTP(t *testing.T) {
	f := newFixture(t)
	// Enough history that a negotiation body goes over http.postBuffer.
	for i := range 40 {
		f.git.Commit(t, "main", map[string]string{"n.txt": strings.Repeat("x", i)}, "filler")
	}
	if a := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`); a.status != 201 {
		t.Fatalf("pin = %d %s", a.status, a.raw)
	}
	url := f.srv.URL + "/git/group/app.git"
	bearer := "http.extraHeader=Authorization: Bearer " + token
	refspec := "+refs/pipelines/7:refs/pipelines/7"
	work := t.TempDir()
	if out, err := gitCLI(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	for _, proto := range []string{"0", "2"} {
		if out, err := gitCLI(t, work, "-c", bearer, "-c", "protocol.version="+proto, "fetch", "--depth=1", url, refspec); err != nil {
			t.Fatalf("fetch (protocol %s): %v\n%s", proto, err, out)
		}
		if out, _ := gitCLI(t, work, "rev-parse", "refs/pipelines/7"); strings.TrimSpace(out) != f.merge {
			t.Fatalf("fetched %q, want %s", out, f.merge)
		}
	}
	// Basic auth with any user and the token as password.
	basicURL := strings.Replace(url, "http://", "http://runner:"+token+"@", 1)
	if out, err := gitCLI(t, work, "fetch", "--depth=1", basicURL, refspec); err != nil {
		t.Fatalf("fetch with basic auth: %v\n%s", err, out)
	}
	// A full (non-shallow) fetch into a clone with its own history: the
	// negotiation is sent chunked with a tiny postBuffer. (Protocol v0: git
	// 2.39's own client hits a BUG() with a postBuffer under 64 KiB in v2.)
	clone := t.TempDir()
	if out, err := gitCLI(t, clone, "-c", bearer, "clone", "-q", "--bare", url, "."); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	f.git.Commit(t, "main", map[string]string{"late.txt": "late\n"}, "late")
	trace := []string{"GIT_TRACE_CURL=1", "GIT_TRACE_CURL_NO_DATA=1"}
	out, err := gitCLIEnv(t, clone, trace, "-c", bearer, "-c", "http.postBuffer=1024", "-c", "protocol.version=0",
		"fetch", url, "+refs/heads/*:refs/heads/*", refspec)
	if err != nil {
		t.Fatalf("chunked fetch: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Transfer-Encoding: chunked") {
		t.Fatalf("the negotiation was not sent chunked; the test proves nothing:\n%s", out)
	}

	for _, c := range []struct{ name, auth string }{{"anonymous", ""}, {"wrong token", "http.extraHeader=Authorization: Bearer wrong"}} {
		args := []string{"fetch", "--depth=1", url, refspec}
		if c.auth != "" {
			args = append([]string{"-c", c.auth}, args...)
		}
		if out, err := gitCLI(t, t.TempDir(), append([]string{"-c", "init.defaultBranch=main"}, args...)...); err == nil {
			t.Fatalf("%s fetch succeeded:\n%s", c.name, out)
		}
	}
	before := f.git.Refs(t, "refs/")
	if out, err := gitCLI(t, clone, "-c", bearer, "push", url, "refs/heads/main:refs/heads/pushed"); err == nil {
		t.Fatalf("push succeeded:\n%s", out)
	}
	if after := f.git.Refs(t, "refs/"); len(after) != len(before) {
		t.Fatalf("push changed refs: %v -> %v", before, after)
	}
	if a := f.do(t, "GET", "/git/group/app.git/info/refs?service=git-receive-pack", ""); a.status != 403 {
		t.Fatalf("receive-pack advertisement = %d", a.status)
	}
	if a := f.do(t, "GET", "/git/..%2Fescape.git/info/refs?service=git-upload-pack", ""); a.status != 400 && a.status != 404 {
		t.Fatalf("traversal on /git = %d", a.status)
	}

	if a := f.do(t, "DELETE", p+"/pipelines/7/ref", ""); a.status != 204 {
		t.Fatalf("delete = %d", a.status)
	}
	out, err = gitCLI(t, work, "-c", bearer, "fetch", "--depth=1", url, refspec)
	if err == nil || !strings.Contains(out, "couldn't find remote ref refs/pipelines/7") {
		t.Fatalf("fetch after delete: %v\n%s", err, out)
	}
}

// TestGitMetricsLabels: the git mount's metrics are labelled only with
// projects that exist; whatever name a client makes up counts as "invalid",
// so clients cannot add time series.
func TestGitMetricsLabels(t *testing.T) {
	f := newFixture(t)
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`)
	if pin.status != 201 {
		t.Fatalf("pin = %d %s", pin.status, pin.raw)
	}
	scoped, _ := pin.body["fetch_token"].(string)
	made := []struct {
		name, method, path string
		auth               string
		status             int
	}{
		{"malformed name, push", "GET", "/git/made-up%201.git/info/refs?service=git-receive-pack", token, 403},
		{"no such project, push", "POST", "/git/made-up-2/x.git/git-receive-pack", token, 403},
		{"no such project, scoped token", "GET", "/git/made-up-3.git/info/refs?service=git-upload-pack", scoped, 401},
	}
	for _, m := range made {
		if a := f.do(t, m.method, m.path, "", "Authorization: Bearer "+m.auth); a.status != m.status {
			t.Fatalf("%s: %d, want %d: %s", m.name, a.status, m.status, a.raw)
		}
	}
	work := t.TempDir()
	if out, err := gitCLI(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	if out, err := gitCLI(t, work, "-c", "http.extraHeader=Authorization: Bearer "+token, "fetch", "--depth=1",
		f.srv.URL+"/git/group/app.git", "+refs/pipelines/7:refs/pipelines/7"); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}

	resp, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var git []string
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "refkeeper_git_") {
			git = append(git, strings.TrimSpace(line))
		}
	}
	for _, line := range git {
		if strings.Contains(line, "made-up") {
			t.Errorf("a made-up name became a label: %s", line)
		}
	}
	// A fetch is one or two upload-pack requests, depending on the protocol.
	for _, want := range []string{
		`refkeeper_git_fetches_total{outcome="refused",project="invalid"} 3`,
		`refkeeper_git_fetches_total{outcome="ok",project="group/app"} `,
		`refkeeper_git_bytes_served_total{project="group/app"} `,
	} {
		if !slices.ContainsFunc(git, func(line string) bool { return strings.HasPrefix(line, want) }) {
			t.Errorf("no %s in:\n%s", want, strings.Join(git, "\n"))
		}
	}
}

// TestGitBackendUnavailable: when git http-backend cannot be run (here its
// binary is gone, as for a moment during an upgrade; in production more
// often a fork failing for want of memory or processes), a fetch gets the
// contract's 503 with Retry-After and a JSON body, not net/http/cgi's empty
// 500; once git can run again the same fetch works.
func TestGitBackendUnavailable(t *testing.T) {
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	gitBinary := filepath.Join(t.TempDir(), "git")
	if err := os.Symlink(real, gitBinary); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *api.Config) { c.GitBinary = gitBinary })
	work := t.TempDir()
	if out, err := gitCLI(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	fetch := []string{"-c", "http.extraHeader=Authorization: Bearer " + token, "fetch", "--depth=1", f.srv.URL + "/git/group/app.git", "+refs/heads/main:refs/heads/main"}
	if out, err := gitCLI(t, work, fetch...); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	if err := os.Remove(gitBinary); err != nil {
		t.Fatal(err)
	}
	a := f.do(t, "GET", "/git/group/app.git/info/refs?service=git-upload-pack", "")
	if a.status != 503 || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("advertisement without git = %d %q, Retry-After %q: %s", a.status, a.errCode(), a.header.Get("Retry-After"), a.raw)
	}
	if out, err := gitCLI(t, work, fetch...); err == nil || !strings.Contains(out, "503") {
		t.Fatalf("fetch without git: %v\n%s", err, out)
	}
	if err := os.Symlink(real, gitBinary); err != nil {
		t.Fatal(err)
	}
	if out, err := gitCLI(t, work, fetch...); err != nil {
		t.Fatalf("fetch once git is back: %v\n%s", err, out)
	}
}

// TestScopedFetchToken: a pin's fetch_token opens that pipeline ref and what
// it reaches, nothing else, and only while the pin lives.
func TestScopedFetchToken(t *testing.T) {
	f := newFixture(t)
	secret := f.git.Commit(t, "secret", map[string]string{"key.txt": "hidden\n"}, "not reachable from any pin")
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`)
	if pin.status != 201 {
		t.Fatalf("pin = %d %s", pin.status, pin.raw)
	}
	f.do(t, "PUT", p+"/pipelines/8/ref", `{"sha":"`+f.c1+`"}`)
	scoped, _ := pin.body["fetch_token"].(string)
	if !strings.HasPrefix(scoped, "rkf1_") {
		t.Fatalf("fetch_token = %q", scoped)
	}
	host := strings.TrimPrefix(f.srv.URL, "http://")
	url := "http://job:" + scoped + "@" + host + "/git/group/app.git"
	work := t.TempDir()
	if out, err := gitCLI(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}

	for _, proto := range []string{"0", "2"} {
		out, err := gitCLI(t, work, "-c", "protocol.version="+proto, "ls-remote", url)
		if err != nil {
			t.Fatalf("ls-remote (protocol %s): %v\n%s", proto, err, out)
		}
		if got := strings.TrimSpace(out); got != f.merge+"\trefs/pipelines/7" {
			t.Fatalf("scoped advertisement (protocol %s) = %q, want only refs/pipelines/7", proto, got)
		}
		if out, err := gitCLI(t, work, "-c", "protocol.version="+proto, "fetch", "--depth=1", url, "+refs/pipelines/7:refs/pipelines/7"); err != nil {
			t.Fatalf("scoped fetch (protocol %s): %v\n%s", proto, err, out)
		}
		if out, _ := gitCLI(t, work, "rev-parse", "refs/pipelines/7"); strings.TrimSpace(out) != f.merge {
			t.Fatalf("scoped fetch got %q", out)
		}
		// By SHA, as runners that fetch the commit instead of the ref do,
		// into an empty repository; the trace shows the protocol spoken.
		bySHA := t.TempDir()
		if out, err := gitCLI(t, bySHA, "init", "-q", "."); err != nil {
			t.Fatal(out)
		}
		out, err = gitCLIEnv(t, bySHA, []string{"GIT_TRACE_PACKET=1"}, "-c", "protocol.version="+proto, "fetch", "--depth=1", url, f.merge)
		if err != nil {
			t.Fatalf("scoped fetch by SHA (protocol %s): %v\n%s", proto, err, out)
		}
		if spoke := strings.Contains(out, "fetch< version 2"); spoke != (proto == "2") {
			t.Fatalf("protocol %s asked, v2 spoken: %v\n%s", proto, spoke, out)
		}
		if out, _ := gitCLI(t, bySHA, "cat-file", "-t", f.merge); strings.TrimSpace(out) != "commit" {
			t.Fatalf("fetch by SHA (protocol %s) did not bring the commit: %s", proto, out)
		}
		for _, want := range []string{"+refs/pipelines/8:refs/x", "+refs/heads/main:refs/x", secret, f.c2} {
			if out, err := gitCLI(t, work, "-c", "protocol.version="+proto, "fetch", "--depth=1", url, want); err == nil {
				t.Fatalf("scoped token fetched %s (protocol %s):\n%s", want, proto, out)
			}
		}
	}
	if out, _ := gitCLI(t, work, "cat-file", "-t", secret); strings.TrimSpace(out) == "commit" {
		t.Fatal("the unreachable commit reached the runner")
	}

	// The API token still reads everything.
	full := "http://job:" + token + "@" + host + "/git/group/app.git"
	if out, err := gitCLI(t, work, "ls-remote", full); err != nil || !strings.Contains(out, "refs/heads/secret") {
		t.Fatalf("API token ls-remote: %v\n%s", err, out)
	}
	// A fetch token is not an API token, is bound to its project, and
	// cannot be altered.
	if a := f.do(t, "GET", p+"/pipelines/7/ref", "", "Authorization: Bearer "+scoped); a.status != 401 {
		t.Fatalf("fetch token on the API = %d", a.status)
	}
	other := "http://job:" + scoped + "@" + host + "/git/group/other.git"
	if out, err := gitCLI(t, work, "ls-remote", other); err == nil {
		t.Fatalf("fetch token opened another project:\n%s", out)
	}
	tampered := scoped[:len(scoped)-2] + "AA"
	if out, err := gitCLI(t, work, "ls-remote", strings.Replace(url, scoped, tampered, 1)); err == nil {
		t.Fatalf("tampered token accepted:\n%s", out)
	}

	// Deleted pin: the token is dead, also for a later pin of the same pipeline.
	f.do(t, "DELETE", p+"/pipelines/7/ref", "")
	if out, err := gitCLI(t, work, "ls-remote", url); err == nil || !strings.Contains(out, "Authentication failed") {
		t.Fatalf("token of a deleted pin: %v\n%s", err, out)
	}
	again := f.do(t, "PUT", p+"/pipelines/7/ref", `{"sha":"`+f.c1+`"}`)
	if again.status != 201 || again.body["fetch_token"] == scoped {
		t.Fatalf("re-created pin = %d, same token %v", again.status, again.body["fetch_token"] == scoped)
	}
	if out, err := gitCLI(t, work, "ls-remote", url); err == nil {
		t.Fatalf("old token opened the new pin:\n%s", out)
	}
}

// TestRateLimits: past its burst a token, or an address, gets 429 with
// Retry-After; a forged X-Forwarded-For does not open a new bucket.
func TestRateLimits(t *testing.T) {
	f := newFixture(t)
	svc := refstest.Over(t, t.TempDir(), nil, f.redis).Service
	for _, tc := range []struct {
		name string
		cfg  api.Config
	}{
		{"per address", api.Config{AddressLimit: api.RateLimit{Rate: 0.01, Burst: 3}}},
		{"per token", api.Config{TokenLimit: api.RateLimit{Rate: 0.01, Burst: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Pins, tc.cfg.Tokens = svc, []string{token}
			h, err := api.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			codes := []int{}
			for i := range 5 {
				req, _ := http.NewRequest("GET", srv.URL+"/api/v1/projects/x/pipelines/1/ref", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes = append(codes, resp.StatusCode)
				if resp.StatusCode == 429 && (resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"rate_limited"`)) {
					t.Fatalf("429 without Retry-After or JSON code: %s", body)
				}
			}
			if codes[2] == 429 || codes[3] != 429 || codes[4] != 429 {
				t.Fatalf("codes = %v, want 3 answered then 429", codes)
			}
			// Health probes are never limited.
			resp, err := http.Get(srv.URL + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz under the limit: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// TestFetchTokenOfALostRecord: Redis loses a pin's record while its ref
// stays; the next fetch with the pin's token brings the record back and
// goes through, and the token still opens nothing else.
func TestFetchTokenOfALostRecord(t *testing.T) {
	f := newFixture(t)
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"sha":"`+f.merge+`","merge_request_iid":12}`)
	other := f.do(t, "PUT", p+"/pipelines/8/ref", `{"sha":"`+f.c1+`"}`)
	if pin.status != 201 || other.status != 201 {
		t.Fatalf("pins = %d %d", pin.status, other.status)
	}
	scoped, _ := pin.body["fetch_token"].(string)
	f.redis.FlushAll(t)

	host := strings.TrimPrefix(f.srv.URL, "http://")
	url := "http://job:" + scoped + "@" + host + "/git/group/app.git"
	work := t.TempDir()
	out, err := gitCLI(t, work, "ls-remote", url)
	if err != nil || strings.TrimSpace(out) != f.merge+"\trefs/pipelines/7" {
		t.Fatalf("fetch token after Redis lost its pin's record: %v\n%s", err, out)
	}
	got := f.do(t, "GET", p+"/pipelines/7/ref", "")
	if got.status != 200 || got.body["state"] != "pinned" || got.body["sha"] != f.merge {
		t.Fatalf("pin after the fetch = %d %s", got.status, got.raw)
	}
	// The token opens its own pipeline only, whose record came back too.
	otherToken, _ := other.body["fetch_token"].(string)
	if out, err := gitCLI(t, work, "ls-remote", strings.Replace(url, scoped, otherToken, 1)); err != nil || strings.Contains(out, "refs/pipelines/7") {
		t.Fatalf("pipeline 8's token after the loss: %v\n%s", err, out)
	}
	// A pin by merge request names it: it records the merge request again.
	again := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`)
	if again.status != 200 || again.body["merge_request_iid"] != float64(12) || again.body["sha"] != f.merge {
		t.Fatalf("pin by merge request after the loss = %d %s", again.status, again.raw)
	}
	if out, err := gitCLI(t, work, "ls-remote", url); err != nil || !strings.Contains(out, "refs/pipelines/7") {
		t.Fatalf("old token after the record came back: %v\n%s", err, out)
	}
	// Deleted, the pin's tokens are dead as before.
	f.do(t, "DELETE", p+"/pipelines/7/ref", "")
	if out, err := gitCLI(t, work, "ls-remote", url); err == nil {
		t.Fatalf("token of a deleted pin:\n%s", out)
	}
}

// TestUnencodedSlashHint: a project path written with a bare "/" matches
// no route; the 404 says how to write it, and a path that is simply
// unknown gets no such hint.
func TestUnencodedSlashHint(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ method, path, want string }{
		{"PUT", "/api/v1/projects/group/app/pipelines/7/ref", "/api/v1/projects/group%2Fapp/pipelines/7/ref"},
		{"GET", "/api/v1/projects/group/app/pipelines", "/api/v1/projects/group%2Fapp/pipelines"},
		{"POST", "/api/v1/projects/a/b/c/merge_requests/3/close", "/api/v1/projects/a%2Fb%2Fc/merge_requests/3/close"},
		{"GET", "/api/v1/projects/group/app", "/api/v1/projects/group%2Fapp"},
	}
	for _, tt := range tests {
		a := f.do(t, tt.method, tt.path, "")
		msg, _ := a.body["error"].(map[string]any)["message"].(string)
		if a.status != 404 || a.errCode() != "not_found" || !strings.Contains(msg, "%2F") || !strings.HasSuffix(msg, tt.want) {
			t.Errorf("%s %s = %d %s, want 404 not_found naming %s", tt.method, tt.path, a.status, a.raw, tt.want)
		}
	}
	for _, path := range []string{"/api/v1/nothing/here", "/api/v1/projects/group%2Fapp/nothing"} {
		a := f.do(t, "GET", path, "")
		if msg, _ := a.body["error"].(map[string]any)["message"].(string); a.status != 404 || msg != "no such route" {
			t.Errorf("GET %s = %d %s, want 404 no such route without a hint", path, a.status, a.raw)
		}
	}
}
