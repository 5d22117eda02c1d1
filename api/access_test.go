package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

// Scoped tokens of the access file the tests write: each of group/*, and
// one of other/* to attack group/app with.
const (
	pipelineToken = "pipeline-token-group-0123456789"
	readToken     = "read-token-group-0123456789"
	otherToken    = "pipeline-token-other-0123456789"
	laterToken    = "pipeline-token-added-later-0123456789"
)

func digest(tok string) string {
	d := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(d[:])
}

type accessToken struct {
	Name     string   `json:"name"`
	SHA256   string   `json:"sha256"`
	Role     string   `json:"role"`
	Projects []string `json:"projects,omitempty"`
}

type accessHook struct {
	Host     string   `json:"host"`
	Secret   string   `json:"secret"`
	Projects []string `json:"projects,omitempty"`
}

// writeAccess writes an access file atomically (as a Secret volume does).
func writeAccess(t *testing.T, path string, tokens []accessToken, hks []accessHook) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"tokens": tokens, "hooks": hks})
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, path, body)
}

func writeRaw(t *testing.T, path string, body []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		t.Fatal(err)
	}
	// A new modification time even within the file system's granularity.
	later := time.Now().Add(time.Duration(len(body)) * time.Millisecond)
	if err := os.Chtimes(tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func baseTokens() []accessToken {
	return []accessToken{
		{Name: "orchestrator", SHA256: digest(pipelineToken), Role: "pipeline", Projects: []string{"group/*"}},
		{Name: "dashboard", SHA256: digest(readToken), Role: "read", Projects: []string{"group/app"}},
		{Name: "other", SHA256: digest(otherToken), Role: "pipeline", Projects: []string{"other/*"}},
	}
}

// accessFixture is the API with projects over a repos root holding
// group/app and other/lib, and an access file.
type accessFixture struct {
	*mirrorFixture
	path     string
	other    *testdata.Repo
	otherSHA string
	logs     *testdata.LockedBuffer
}

func newAccessFixture(t *testing.T) *accessFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.json")
	writeAccess(t, path, baseTokens(), nil)
	logs := &testdata.LockedBuffer{}
	file := &access.File{Path: path, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if err := file.Load(); err != nil {
		t.Fatal(err)
	}
	m := newMirrorFixture(t, 30*time.Second, func(cfg *api.Config) { cfg.Access = file })
	other := testdata.NewBareRepo(t, m.root, "other/lib")
	sha := other.Commit(t, "main", map[string]string{"lib.txt": "lib\n"}, "lib")
	return &accessFixture{mirrorFixture: m, path: path, other: other, otherSHA: sha, logs: logs}
}

// withAccessFile gives the API the access file of baseTokens.
func withAccessFile(t *testing.T) func(*api.Config) {
	path := filepath.Join(t.TempDir(), "access.json")
	writeAccess(t, path, baseTokens(), nil)
	return func(cfg *api.Config) { cfg.Access = &access.File{Path: path} }
}

func asToken(tok string) string { return "Authorization: Bearer " + tok }

const otherPath = "/api/v1/projects/other%2Flib"

func TestRolesAndProjects(t *testing.T) {
	f := newAccessFixture(t)
	// Existing state, made by the admin token, that refusals must leave.
	if a := f.do(t, "PUT", p+"/pipelines/1/ref", `{"sha":"`+f.c1+`","merge_request_iid":12}`); a.status != 201 {
		t.Fatalf("admin pin = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "PUT", otherPath+"/pipelines/1/ref", `{"sha":"`+f.otherSHA+`"}`); a.status != 201 {
		t.Fatalf("admin pin of other/lib = %d %s", a.status, a.raw)
	}
	gitBefore := f.git.Refs(t, "refs/pipelines/")
	otherBefore := f.other.Refs(t, "refs/pipelines/")

	type step struct {
		name, method, path, body string
		tok                      string
		status                   int
		code                     string
	}
	pinBody := `{"sha":"` + f.c1 + `"}`
	refused := []step{
		// Another project's pipeline token, on every route of group/app.
		{"other pins", "PUT", p + "/pipelines/2/ref", pinBody, otherToken, 403, "forbidden"},
		{"other re-pins", "PUT", p + "/pipelines/1/ref", `{"sha":"` + f.c2 + `"}`, otherToken, 403, "forbidden"},
		{"other gets", "GET", p + "/pipelines/1/ref", "", otherToken, 403, "forbidden"},
		{"other lists", "GET", p + "/pipelines", "", otherToken, 403, "forbidden"},
		{"other finishes", "POST", p + "/pipelines/1/finish", "", otherToken, 403, "forbidden"},
		{"other deletes", "DELETE", p + "/pipelines/1/ref", "", otherToken, 403, "forbidden"},
		{"other closes", "POST", p + "/merge_requests/12/close", "", otherToken, 403, "forbidden"},
		{"other gets project", "GET", p, "", otherToken, 403, "forbidden"},
		{"other asks a missing project", "GET", "/api/v1/projects/group%2Fnope/pipelines/1/ref", "", otherToken, 403, "forbidden"},
		// A read token cannot change anything, even in its project.
		{"read pins", "PUT", p + "/pipelines/2/ref", pinBody, readToken, 403, "forbidden"},
		{"read finishes", "POST", p + "/pipelines/1/finish", "", readToken, 403, "forbidden"},
		{"read deletes", "DELETE", p + "/pipelines/1/ref", "", readToken, 403, "forbidden"},
		{"read closes", "POST", p + "/merge_requests/12/close", "", readToken, 403, "forbidden"},
		{"read gets other/lib", "GET", otherPath + "/pipelines/1/ref", "", readToken, 403, "forbidden"},
		// Only admin registers or deletes mirrors and runs GC.
		{"pipeline registers", "PUT", mirrorPath, `{"upstream":"` + f.upstream.URL() + `"}`, pipelineToken, 403, "forbidden"},
		{"pipeline registers in its projects", "PUT", "/api/v1/projects/group%2Fnew", `{"upstream":"` + f.upstream.URL() + `"}`, pipelineToken, 403, "forbidden"},
		{"pipeline deletes a project", "DELETE", p, "", pipelineToken, 403, "forbidden"},
		{"pipeline runs gc", "POST", "/api/v1/gc", "", pipelineToken, 403, "forbidden"},
		{"read runs gc", "POST", "/api/v1/gc", "", readToken, 403, "forbidden"},
		{"read deletes a project", "DELETE", p, "", readToken, 403, "forbidden"},
		// An unknown token stays 401.
		{"unknown", "GET", p + "/pipelines/1/ref", "", "no-such-token-0123456789", 401, "unauthorized"},
	}
	for _, s := range refused {
		a := f.do(t, s.method, s.path, s.body, asToken(s.tok))
		if a.status != s.status || a.errCode() != s.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", s.name, a.status, a.errCode(), s.status, s.code, a.raw)
		}
	}
	if got := f.git.Refs(t, "refs/pipelines/"); !equalRefs(got, gitBefore) {
		t.Errorf("refused requests changed group/app's refs: %v, was %v", got, gitBefore)
	}
	if got := f.other.Refs(t, "refs/pipelines/"); !equalRefs(got, otherBefore) {
		t.Errorf("refused requests changed other/lib's refs: %v, was %v", got, otherBefore)
	}
	if _, err := os.Stat(filepath.Join(f.root, "mirrors/gh.git")); !os.IsNotExist(err) {
		t.Errorf("a refused registration left mirrors/gh.git (%v)", err)
	}
	if a := f.do(t, "GET", p+"/pipelines/1/ref", ""); a.body["state"] != "pinned" || a.body["sha"] != f.c1 {
		t.Errorf("group/app pipeline 1 after the refusals = %s", a.raw)
	}

	allowed := []step{
		{"read gets", "GET", p + "/pipelines/1/ref", "", readToken, 200, ""},
		{"read lists", "GET", p + "/pipelines", "", readToken, 200, ""},
		{"read gets project", "GET", p, "", readToken, 200, ""},
		{"pipeline pins", "PUT", p + "/pipelines/2/ref", pinBody, pipelineToken, 201, ""},
		{"pipeline gets", "GET", p + "/pipelines/2/ref", "", pipelineToken, 200, ""},
		{"pipeline lists", "GET", p + "/pipelines", "", pipelineToken, 200, ""},
		{"pipeline finishes", "POST", p + "/pipelines/2/finish", "", pipelineToken, 200, ""},
		{"pipeline closes", "POST", p + "/merge_requests/12/close", "", pipelineToken, 200, ""},
		{"pipeline deletes", "DELETE", p + "/pipelines/2/ref", "", pipelineToken, 204, ""},
		{"other in its own project", "GET", otherPath + "/pipelines/1/ref", "", otherToken, 200, ""},
		{"admin runs gc", "POST", "/api/v1/gc", "", token, 200, ""},
	}
	for _, s := range allowed {
		a := f.do(t, s.method, s.path, s.body, asToken(s.tok))
		if a.status != s.status || a.errCode() != s.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", s.name, a.status, a.errCode(), s.status, s.code, a.raw)
		}
	}
}

func equalRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestProjectListingIsFiltered(t *testing.T) {
	f := newAccessFixture(t)
	names := func(tok, query string) ([]string, any) {
		a := f.do(t, "GET", "/api/v1/projects"+query, "", asToken(tok))
		if a.status != 200 {
			t.Fatalf("list with %s = %d %s", tok, a.status, a.raw)
		}
		var out []string
		for _, pj := range a.body["projects"].([]any) {
			out = append(out, pj.(map[string]any)["project"].(string))
		}
		return out, a.body["next_cursor"]
	}
	if got, _ := names(token, ""); strings.Join(got, ",") != "group/app,other/lib" {
		t.Errorf("admin lists %v", got)
	}
	if got, _ := names(readToken, ""); strings.Join(got, ",") != "group/app" {
		t.Errorf("read token of group/app lists %v", got)
	}
	if got, _ := names(otherToken, ""); strings.Join(got, ",") != "other/lib" {
		t.Errorf("token of other/* lists %v", got)
	}
	// Page by page: what is filtered out is neither listed nor skipped.
	first, next := names(otherToken, "?limit=1")
	if strings.Join(first, ",") != "other/lib" {
		t.Errorf("token of other/*, limit 1, lists %v (next %v)", first, next)
	}
	// A cursor names only what the caller may see: other/*'s token must not
	// learn group/app from it, nor group/app's token other/lib.
	if next != nil {
		t.Errorf("token of other/*, limit 1: next_cursor %v, want null (no other project it may read)", next)
	}
	if got, next := names(readToken, "?limit=1"); strings.Join(got, ",") != "group/app" || next != nil {
		t.Errorf("read token of group/app, limit 1: %v next %v, want [group/app] and null", got, next)
	}
	if got, next := names(token, "?limit=1"); strings.Join(got, ",") != "group/app" || next != "group/app" {
		t.Errorf("admin, limit 1: %v next %v, want [group/app] and group/app", got, next)
	}
	// Many projects the caller may not read, before and between the ones
	// it may: each page and each cursor holds only its own projects.
	for i := range 20 {
		testdata.NewBareRepo(t, f.root, fmt.Sprintf("aaa/secret%02d", i))
		testdata.NewBareRepo(t, f.root, fmt.Sprintf("other/secret%02d", i))
	}
	var seen []string
	for cursor, pages := "", 0; pages < 10; pages++ {
		got, next := names(readToken, "?limit=1&cursor="+url.QueryEscape(cursor))
		seen = append(seen, got...)
		if next != nil && !slices.Contains(got, next.(string)) {
			t.Errorf("read token of group/app got next_cursor %q with page %v: a name it may not see", next, got)
		}
		if next == nil {
			break
		}
		cursor = next.(string)
	}
	if strings.Join(seen, ",") != "group/app" {
		t.Errorf("read token of group/app listed %v over its pages, want [group/app]", seen)
	}
}

// TestGitFetchScope fetches with the git CLI and raw HTTP: an API token
// fetches only the projects its role covers.
func TestGitFetchScope(t *testing.T) {
	f := newAccessFixture(t)
	if a := f.do(t, "PUT", p+"/pipelines/1/ref", `{"sha":"`+f.c1+`"}`); a.status != 201 {
		t.Fatalf("pin = %d %s", a.status, a.raw)
	}
	fetch := func(tok, project string) (string, error) {
		dir := t.TempDir()
		cmd := exec.Command("git", "-c", "http.extraHeader=Authorization: Bearer "+tok, "-c", "credential.helper=",
			"fetch", "-q", f.srv.URL+"/git/"+project+".git", "+refs/heads/*:refs/remotes/x/*")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_DIR="+filepath.Join(dir, "repo.git"))
		if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(dir, "repo.git")).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v %s", err, out)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tok := range []string{readToken, pipelineToken, token} {
		if out, err := fetch(tok, "group/app"); err != nil {
			t.Errorf("fetch of group/app with a token covering it: %v\n%s", err, out)
		}
	}
	out, err := fetch(otherToken, "group/app")
	if err == nil || !strings.Contains(out, "403") {
		t.Errorf("fetch of group/app with other/*'s token: err %v, output %q, want a 403", err, out)
	}
	// Raw HTTP: advertisement and upload-pack alike, basic auth too.
	for _, target := range [][3]string{
		{"GET", "/git/group/app.git/info/refs?service=git-upload-pack", ""},
		{"POST", "/git/group/app.git/git-upload-pack", v2Fetch("want "+f.c1, "done")},
		{"GET", "/git/group/nope.git/info/refs?service=git-upload-pack", ""},
	} {
		for _, auth := range []func(*http.Request){
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+otherToken) },
			func(r *http.Request) { r.SetBasicAuth("x", otherToken) },
		} {
			req, err := http.NewRequest(target[0], f.srv.URL+target[1], strings.NewReader(target[2]))
			if err != nil {
				t.Fatal(err)
			}
			auth(req)
			req.Header.Set("Git-Protocol", "version=2")
			req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 403 || body["error"]["code"] != "forbidden" {
				t.Errorf("%s %s with other/*'s token = %d %v, want 403 forbidden", req.Method, req.URL.Path, resp.StatusCode, body)
			}
		}
	}
	// Its own project it fetches.
	// /metrics needs no token: its labels must not tell other/*'s token
	// that group/app exists (nor anyone what names were tried).
	resp, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "refkeeper_git_fetches_total{") && strings.Contains(line, `outcome="refused"`) &&
			!strings.Contains(line, `project="invalid"`) {
			t.Errorf("a refused fetch is labelled with the project it was refused: %s", line)
		}
	}
	if !strings.Contains(string(metrics), `refkeeper_git_fetches_total{outcome="refused",project="invalid"}`) {
		t.Errorf("the refused fetches are not counted:\n%s", metrics)
	}
	if out, err := fetch(otherToken, "other/lib"); err != nil {
		t.Errorf("fetch of other/lib with its token: %v\n%s", err, out)
	}
}

func TestAccessFileReread(t *testing.T) {
	f := newAccessFixture(t)
	get := func(tok string) int { return f.do(t, "GET", p+"/pipelines/1/ref", "", asToken(tok)).status }
	if s := get(laterToken); s != 401 {
		t.Fatalf("a token not yet in the file = %d, want 401", s)
	}
	writeAccess(t, f.path, append(baseTokens(), accessToken{Name: "later", SHA256: digest(laterToken), Role: "pipeline", Projects: []string{"group/app"}}), nil)
	if s := get(laterToken); s != 404 {
		t.Fatalf("a token added to the file = %d, want 404 pin_not_found (allowed)", s)
	}
	// A broken edit: the last good file stays, and a line says so.
	writeRaw(t, f.path, []byte(`{"tokens": [{"name": "x", "sha256": "not hex", "role": "pipeline", "projects": ["*"]}]}`))
	if s := get(laterToken); s != 404 {
		t.Errorf("after a bad edit, the last good file's token = %d, want 404 (still allowed)", s)
	}
	if s := get(otherToken); s != 403 {
		t.Errorf("after a bad edit, other/*'s token on group/app = %d, want 403", s)
	}
	if !strings.Contains(f.logs.String(), "access file not reloaded") || !strings.Contains(f.logs.String(), "sha256 must be 64 hex digits") {
		t.Errorf("no log line for the bad re-read:\n%s", f.logs.String())
	}
	// Fixed again, without the later token: it is gone.
	writeAccess(t, f.path, baseTokens(), nil)
	if s := get(laterToken); s != 401 {
		t.Errorf("a token removed from the file = %d, want 401", s)
	}
}

// TestScopedTokenOnTwoReplicas: two API processes over one Redis and one
// repos root, each with its own copy of the access file's configuration.
func TestScopedTokenOnTwoReplicas(t *testing.T) {
	f := newAccessFixture(t)
	fx2 := refstest.Over(t, f.root, nil, f.redis)
	srv2 := httptest.NewUnstartedServer(nil)
	h, err := api.New(api.Config{Pins: fx2.Service, Tokens: []string{"replica-two-admin-0123456789"},
		FetchURL: "http://" + srv2.Listener.Addr().String(), Access: &access.File{Path: f.path}})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Config.Handler = h
	srv2.Start()
	t.Cleanup(srv2.Close)
	two := &fixture{srv: srv2}
	if a := f.do(t, "PUT", p+"/pipelines/5/ref", `{"sha":"`+f.c1+`"}`, asToken(pipelineToken)); a.status != 201 {
		t.Fatalf("pin on replica one = %d %s", a.status, a.raw)
	}
	if a := two.do(t, "POST", p+"/pipelines/5/finish", "", asToken(pipelineToken)); a.status != 200 || a.body["state"] != "finished" {
		t.Fatalf("finish on replica two = %d %s", a.status, a.raw)
	}
	if a := two.do(t, "DELETE", otherPath+"/pipelines/5/ref", "", asToken(pipelineToken)); a.status != 403 {
		t.Fatalf("replica two, another project = %d %s, want 403", a.status, a.raw)
	}
	if a := f.do(t, "GET", p+"/pipelines/5/ref", "", asToken(pipelineToken)); a.body["state"] != "finished" {
		t.Fatalf("replica one sees %s", a.raw)
	}
}

// hookAccess turns on /hooks/github with per-project secrets only.
func withAccessHooks(path string) func(*api.Config) {
	return func(cfg *api.Config) {
		file := &access.File{Path: path}
		svc := cfg.Pins.(*refs.Service)
		cfg.Access = file
		cfg.Hooks = &hooks.Receiver{Domain: svc, PerProject: file,
			Deliveries: &hooks.RedisDeliveries{Client: svc.Store.Client, Keys: svc.Store.Keys, EventTTL: svc.Policy.MaxAge}}
	}
}

func TestPerProjectHookSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	const secretApp, secretRotated, secretOther = "hook-secret-group-app-0123", "hook-secret-group-app-rotated", "hook-secret-other-0123"
	writeAccess(t, path, nil, []accessHook{
		{Host: "github", Secret: secretOther, Projects: []string{"other/*"}},
	})
	f := newFixture(t, withAccessHooks(path))
	head, _ := f.git.RefSHA(t, "refs/heads/feature")
	body := testdata.HookPayload(t, "github-workflow_run-requested.json", map[string]string{"HEAD_SHA": head, "BASE_SHA": f.c2})
	send := func(secret, id string, b []byte) answer {
		return f.do(t, "POST", "/hooks/github", string(b), "Authorization: ", "X-GitHub-Event: workflow_run",
			"X-GitHub-Delivery: "+id, "X-Hub-Signature-256: sha256="+testdata.HMACHex(secret, b))
	}
	// other/*'s maintainers forge a delivery for group/app.
	if a := send(secretOther, "forged-1", body); a.status != 401 || a.errCode() != "unauthorized" {
		t.Fatalf("group/app delivery signed with other/*'s secret = %d %s, want 401", a.status, a.raw)
	}
	if refs := f.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("the forged delivery wrote %v", refs)
	}
	// No gitlab or gitea secret at all: their routes are off.
	if a := f.do(t, "POST", "/hooks/gitlab", `{}`, "Authorization: "); a.status != 404 {
		t.Errorf("/hooks/gitlab with no secret for it = %d, want 404", a.status)
	}
	// Two secrets of group/app (a rotation), added by a re-read.
	writeAccess(t, path, nil, []accessHook{
		{Host: "github", Secret: secretOther, Projects: []string{"other/*"}},
		{Host: "github", Secret: secretApp, Projects: []string{"group/app"}},
		{Host: "github", Secret: secretRotated, Projects: []string{"group/*"}},
		{Host: "gitlab", Secret: "gitlab-secret-0123456789"},
	})
	if a := f.do(t, "POST", "/hooks/gitlab", `{}`, "Authorization: ", "X-Gitlab-Token: gitlab-secret-0123456789", "X-Gitlab-Event: Push Hook"); a.status != 200 {
		t.Errorf("/hooks/gitlab after a re-read added its secret = %d %s, want 200", a.status, a.raw)
	}
	if a := send(secretOther, "forged-2", body); a.status != 401 {
		t.Fatalf("forged again after the re-read = %d %s, want 401", a.status, a.raw)
	}
	a := send(secretRotated, "real-1", body)
	if a.status != 200 || a.body["action"] != "pinned" {
		t.Fatalf("delivery signed with the new secret = %d %s", a.status, a.raw)
	}
	if a := send(secretApp, "real-2", body); a.status != 200 || a.body["action"] != "pinned" {
		t.Fatalf("delivery signed with the old secret = %d %s", a.status, a.raw)
	}
	for _, answer := range []answer{a, send(secretRotated, "real-1", body)} { // the second is a replay
		for _, pin := range answer.body["pins"].([]any) {
			if tok, present := pin.(map[string]any)["fetch_token"]; !present || tok != nil {
				t.Errorf("hook answer has fetch_token %v (present %v), want null: %s", tok, present, answer.raw)
			}
		}
	}
	// other/*'s secret, replaying group/app's delivery id with a body of
	// its own: not group/app's remembered answer.
	ping := []byte(`{"action":"completed","repository":{"full_name":"other/lib"}}`)
	if a := send(secretOther, "real-1", ping); a.status != 200 || strings.Contains(a.raw, "group/app") {
		t.Fatalf("other/*'s delivery with group/app's delivery id = %d %s, want its own answer", a.status, a.raw)
	}
	// A delivery that names another project than its payload acts on
	// cannot exist (one name is read), so: a body naming other/lib signed
	// with other/*'s secret is verified, and is about other/lib alone.
	forOther := testdata.HookEdit(t, body, `"full_name": "group/app"`, `"full_name": "other/lib"`)
	if a := send(secretOther, "other-1", forOther); a.status != 200 {
		t.Fatalf("other/lib's own delivery = %d %s, want 200", a.status, a.raw)
	}
	if refs := f.git.Refs(t, "refs/pipelines/"); len(refs) != 1 {
		t.Errorf("group/app's pipeline refs = %v, want just the real one", refs)
	}
}

// TestReplayedHookAnswerHasNoFetchToken: an answer remembered before
// answers stopped carrying fetch tokens is replayed without them.
func TestReplayedHookAnswerHasNoFetchToken(t *testing.T) {
	var deliveries *hooks.RedisDeliveries
	f := newFixture(t, withHooks(hooks.GitHub), func(cfg *api.Config) {
		deliveries = cfg.Hooks.(*hooks.Receiver).Deliveries.(*hooks.RedisDeliveries)
	})
	old := `{"action":"pinned","reason":"pipeline 5 pinned","pins":[{"project":"group/app","pipeline_id":5,"ref":"refs/pipelines/5",` +
		`"sha":"` + f.c1 + `","refspec":"+refs/pipelines/5:refs/pipelines/5","fetch_url":"http://x/git/group/app.git",` +
		`"fetch_token":"rkf1_live-token-from-an-old-answer","merge_request_iid":null,"state":"pinned",` +
		`"created_at":"2026-12-01T10:00:00Z","finished_at":null,"expires_at":null,"merge":null}]}`
	if err := deliveries.RememberDelivery(t.Context(), "github", "old-1", []byte(old), time.Hour); err != nil {
		t.Fatal(err)
	}
	a := f.githubHook(t, "workflow_run", "old-1", []byte(`{"action":"completed"}`))
	if a.status != 200 || strings.Contains(a.raw, "live-token") {
		t.Fatalf("replayed answer = %d %s, want it without the fetch token", a.status, a.raw)
	}
	pins, _ := a.body["pins"].([]any)
	if len(pins) != 1 || a.body["action"] != "pinned" {
		t.Fatalf("replayed answer = %s, want the remembered one", a.raw)
	}
	if tok, present := pins[0].(map[string]any)["fetch_token"]; !present || tok != nil {
		t.Fatalf("replayed pin's fetch_token = %v (present %v), want null", tok, present)
	}
}

// TestRateLimitScopedTokens: each scoped token of the access file has its
// own bucket, as an admin token does; a made-up one only its address's.
func TestRateLimitScopedTokens(t *testing.T) {
	f := newFixture(t, withAccessFile(t), func(c *api.Config) { c.TokenLimit = api.RateLimit{Rate: 0.001, Burst: 2} })
	scoped := func(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }
	steps := []struct {
		name string
		tok  string
		want int // 0: anything but 429
	}{
		{"pipeline token", pipelineToken, 0},
		{"pipeline token again", pipelineToken, 0},
		{"pipeline token over its burst", pipelineToken, 429},
		{"read token has its own bucket", readToken, 0},
		{"read token again", readToken, 0},
		{"read token over its burst", readToken, 429},
		{"admin token has its own bucket", token, 0},
	}
	for _, s := range steps {
		got := f.status(t, limitedPath, scoped(s.tok))
		if s.want == 429 && got != 429 || s.want == 0 && got == 429 {
			t.Errorf("%s: %d, want %s", s.name, got, map[int]string{0: "not 429", 429: "429"}[s.want])
		}
	}
}
