package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

// mirrorFixture is the API over a repos root holding the local project
// group/app, a real redis-server, a real upstream and a credentials file
// naming its credential "upstream".
type mirrorFixture struct {
	*fixture
	root     string
	upstream *testdata.Upstream
	creds    string
	projects *mirrors.Projects
	// logs is what the server logged (the causes of 5xx answers).
	logs *testdata.LockedBuffer
}

const mirrorPath = "/api/v1/projects/mirrors%2Fgh"

func newMirrorFixture(t *testing.T, upstreamTimeout time.Duration, opts ...func(*api.Config)) *mirrorFixture {
	t.Helper()
	fx := refstest.New(t)
	root, g, r := fx.Dir, fx.Git, fx.Redis
	u := testdata.StartUpstream(t)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	writeCredentials(t, creds, u, testdata.UpstreamPassword)
	logs := &testdata.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Registered first, so it runs last: after every clone has ended.
	t.Cleanup(func() {
		for _, secret := range []string{testdata.UpstreamPassword, "wrong-password", "rotated"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a log line shows a password (%s):\n%s", secret, logs.String())
			}
		}
	})
	reposRoot, store := fx.Repos, fx.Store
	reposRoot.Logger = logger
	// The upstream is on loopback, which the default policy refuses.
	policy, err := mirrors.ParseUpstreamPolicy(testdata.LoopbackUpstreams)
	if err != nil {
		t.Fatal(err)
	}
	projects := &mirrors.Projects{
		Policy:          policy,
		Repos:           reposRoot,
		Fetcher:         &gitops.Fetcher{Root: reposRoot, Timeout: upstreamTimeout},
		Store:           store,
		Credentials:     &mirrors.CredentialFile{Path: creds},
		UpstreamTimeout: upstreamTimeout,
		Logger:          logger,
	}
	t.Cleanup(projects.Close)
	svc := fx.Service
	svc.Mirrors, svc.Logger = projects, logger
	srv := httptest.NewUnstartedServer(nil)
	cfg := api.Config{Pins: svc, Projects: projects, Tokens: []string{token}, Logger: logger,
		FetchURL: "http://" + srv.Listener.Addr().String()}
	for _, opt := range opts {
		opt(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return &mirrorFixture{
		fixture:  &fixture{srv: srv, git: g.Repo, redis: r, c1: g.First, c2: g.Second, merge: g.Merge},
		root:     root,
		upstream: u,
		creds:    creds,
		projects: projects,
		logs:     logs,
	}
}

func writeCredentials(t *testing.T, path string, u *testdata.Upstream, password string) {
	t.Helper()
	body := u.CredentialsJSON("upstream", password)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// register PUTs the mirror mirrors/gh of the upstream with host kind host.
func (f *mirrorFixture) register(t *testing.T, host string) answer {
	t.Helper()
	return f.do(t, http.MethodPut, mirrorPath,
		fmt.Sprintf(`{"upstream": %q, "host": %q, "credential": "upstream"}`, f.upstream.URL(), host))
}

// awaitState polls GET until the project leaves state cloning.
func (f *mirrorFixture) awaitState(t *testing.T, path string) answer {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a := f.do(t, http.MethodGet, path, "")
		if a.status != http.StatusOK || a.body["state"] != "cloning" || time.Now().After(deadline) {
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyMirror registers mirrors/gh and waits until it is cloned.
func (f *mirrorFixture) readyMirror(t *testing.T, host string) {
	t.Helper()
	if a := f.register(t, host); a.status != http.StatusAccepted {
		t.Fatalf("PUT mirror: %d %s", a.status, a.raw)
	}
	if a := f.awaitState(t, mirrorPath); a.body["state"] != "ready" {
		t.Fatalf("mirror not ready: %d %s", a.status, a.raw)
	}
}

// failedMirror registers mirrors/gh with host kind host and waits until
// its clone has failed (the test made sure it would: a wrong password, an
// upstream stopped).
func (f *mirrorFixture) failedMirror(t *testing.T, host string) {
	t.Helper()
	if a := f.register(t, host); a.status != http.StatusAccepted {
		t.Fatalf("PUT mirror: %d %s", a.status, a.raw)
	}
	if a := f.awaitState(t, mirrorPath); a.body["state"] != "failed" {
		t.Fatalf("mirror whose clone cannot succeed: %s, want failed", a.raw)
	}
}

// gitIn runs the git CLI on a repository below the repos root.
func gitIn(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", dir}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// cloneUpstream clones u's repository into a work tree of the test's, for
// commits the upstream does not have yet, and answers a git that runs in
// that work tree (a fixed author and committer, no global config) and
// answers git's output trimmed; a git that fails fails the test.
func cloneUpstream(t *testing.T, u *testdata.Upstream) (git func(args ...string) string) {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("clone", "-q", u.Path(), work)
	return func(args ...string) string {
		t.Helper()
		return run(append([]string{"-C", work}, args...)...)
	}
}

func TestMirrorRegisterCloneGetListDelete(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream
	mirrorDir := filepath.Join(f.root, "mirrors", "gh.git")

	// The first fetch hangs upstream: the answer is 202 cloning, and the
	// half-made mirror is no project yet.
	u.Stall()
	a := f.register(t, "github")
	if a.status != http.StatusAccepted || a.body["state"] != "cloning" || a.body["kind"] != "mirror" ||
		a.body["upstream"] != u.URL() || a.body["host"] != "github" || a.body["credential"] != "upstream" ||
		a.body["fetched_at"] != nil || a.body["last_error"] != nil {
		t.Fatalf("PUT: %d %s, want 202 with a cloning mirror", a.status, a.raw)
	}
	if _, err := os.Stat(mirrorDir); !os.IsNotExist(err) {
		t.Errorf("the mirror is in place while cloning (%v)", err)
	}
	if a := f.do(t, http.MethodPut, "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref", `{"sha": "`+u.Second+`"}`); a.status != http.StatusServiceUnavailable || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Errorf("pin on a cloning mirror: %d %s, want 503 unavailable with Retry-After", a.status, a.raw)
	}
	if a := f.register(t, "github"); a.status != http.StatusAccepted || a.body["state"] != "cloning" {
		t.Errorf("PUT while cloning: %d %s, want 202 cloning", a.status, a.raw)
	}
	u.Release()
	a = f.awaitState(t, mirrorPath)
	if a.body["state"] != "ready" || a.body["fetched_at"] == nil || a.body["last_error"] != nil {
		t.Fatalf("after the clone: %s, want ready with fetched_at", a.raw)
	}
	if got := u.Fetches(); got != 1 {
		t.Errorf("cloning fetched %d times, want 1 (a second PUT while cloning must not start another)", got)
	}
	// What git says, not what the service says.
	for ref, want := range map[string]string{"refs/heads/main": u.Second, "refs/heads/feature": u.Head,
		"refs/pull/1/head": u.Head, "refs/pull/1/merge": u.Merge} {
		if got, err := gitIn(t, mirrorDir, "rev-parse", ref); err != nil || got != want {
			t.Errorf("mirror %s = %q (%v), want %s", ref, got, err, want)
		}
	}
	if out, _ := gitIn(t, mirrorDir, "for-each-ref", "refs/merge-requests/", "refs/tags/"); out != "" {
		t.Errorf("a github mirror took refs beyond branches and pulls: %s", out)
	}
	if got, _ := gitIn(t, mirrorDir, "config", "refkeeper.upstream"); got != u.URL() {
		t.Errorf("refkeeper.upstream = %q, want %s", got, u.URL())
	}
	if out, _ := gitIn(t, mirrorDir, "config", "--list"); strings.Contains(out, testdata.UpstreamPassword) {
		t.Errorf("the mirror's config holds the password:\n%s", out)
	}

	// The same mirror again: 200; a changed host is taken over.
	if a := f.register(t, "github"); a.status != http.StatusOK || a.body["state"] != "ready" {
		t.Errorf("PUT again: %d %s, want 200 ready", a.status, a.raw)
	}
	if a := f.register(t, "gitlab"); a.status != http.StatusOK || a.body["host"] != "gitlab" {
		t.Errorf("PUT with another host: %d %s, want 200 with host gitlab", a.status, a.raw)
	}
	if got, _ := gitIn(t, mirrorDir, "config", "refkeeper.host"); got != "gitlab" {
		t.Errorf("refkeeper.host = %q after the change, want gitlab", got)
	}
	f.register(t, "github")

	// A pin on the mirror works as on any project.
	if a := f.do(t, http.MethodPut, "/api/v1/projects/mirrors%2Fgh/pipelines/7/ref", `{"sha": "`+u.Second+`"}`); a.status != http.StatusCreated {
		t.Fatalf("pin on the mirror: %d %s", a.status, a.raw)
	}

	// Redis loses everything: the mirror is still known, from its config.
	f.redis.FlushAll(t)
	a = f.do(t, http.MethodGet, mirrorPath, "")
	if a.status != http.StatusOK || a.body["kind"] != "mirror" || a.body["upstream"] != u.URL() || a.body["host"] != "github" {
		t.Errorf("GET after Redis was emptied: %d %s, want the mirror", a.status, a.raw)
	}
	a = f.do(t, http.MethodGet, "/api/v1/projects", "")
	list, _ := a.body["projects"].([]any)
	if a.status != http.StatusOK || len(list) != 2 {
		t.Fatalf("list: %d %s, want 2 projects", a.status, a.raw)
	}
	local, _ := list[0].(map[string]any)
	mirror, _ := list[1].(map[string]any)
	if local["project"] != "group/app" || local["kind"] != "local" || local["state"] != "ready" || local["upstream"] != nil ||
		local["host"] != nil || local["credential"] != nil {
		t.Errorf("list[0] = %v, want the local project group/app with null upstream fields", local)
	}
	if mirror["project"] != "mirrors/gh" || mirror["kind"] != "mirror" {
		t.Errorf("list[1] = %v, want the mirror", mirror)
	}
	if a.body["next_cursor"] != nil {
		t.Errorf("next_cursor = %v on the only page", a.body["next_cursor"])
	}

	// The pin again, so that there are records to delete with the mirror.
	f.do(t, http.MethodPut, "/api/v1/projects/mirrors%2Fgh/pipelines/7/ref", `{"sha": "`+u.Second+`"}`)
	if a := f.do(t, http.MethodDelete, mirrorPath, ""); a.status != http.StatusNoContent {
		t.Fatalf("DELETE mirror: %d %s", a.status, a.raw)
	}
	if _, err := os.Stat(mirrorDir); !os.IsNotExist(err) {
		t.Errorf("the mirror's repository is still there (%v)", err)
	}
	if a := f.do(t, http.MethodGet, mirrorPath, ""); a.status != http.StatusNotFound || a.errCode() != "project_not_found" {
		t.Errorf("GET after DELETE: %d %s, want 404", a.status, a.raw)
	}
	keys, err := f.redis.Client(t).Keys(context.Background(), "*{mirrors/gh}*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("records left after DELETE: %v (%v)", keys, err)
	}
	if a := f.do(t, http.MethodDelete, mirrorPath, ""); a.status != http.StatusNotFound {
		t.Errorf("DELETE twice: %d %s, want 404", a.status, a.raw)
	}
	if a := f.do(t, http.MethodGet, p, ""); a.status != http.StatusOK || a.body["kind"] != "local" {
		t.Errorf("the local project after the mirror's deletion: %d %s", a.status, a.raw)
	}
}

func TestMirrorRegistrationRefusals(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream.URL()
	withUser := strings.Replace(u, "http://", "http://"+testdata.UpstreamUser+":"+testdata.UpstreamPassword+"@", 1)
	for _, tc := range []struct {
		name, body, code string
		status           int
	}{
		{"user info in the URL", fmt.Sprintf(`{"upstream": %q}`, withUser), "invalid_request", 400},
		{"user alone in the URL", fmt.Sprintf(`{"upstream": %q}`, strings.Replace(u, "http://", "http://bot@", 1)), "invalid_request", 400},
		{"ssh scheme", `{"upstream": "ssh://git.example.com/group/app.git"}`, "invalid_request", 400},
		{"scp form", `{"upstream": "git@example.com:group/app.git"}`, "invalid_request", 400},
		{"unknown host kind", fmt.Sprintf(`{"upstream": %q, "host": "bitbucket"}`, u), "invalid_request", 400},
		// As a credential not for this project (TestMirrorCredentialBoundToHosts): no name oracle.
		{"unknown credential", fmt.Sprintf(`{"upstream": %q, "credential": "nobody"}`, u), "upstream_not_allowed", 403},
		{"no upstream", `{"host": "github"}`, "invalid_request", 400},
		{"unknown field", fmt.Sprintf(`{"upstream": %q, "password": "x"}`, u), "invalid_request", 400},
		{"relative file URL", `{"upstream": "file:relative/path.git"}`, "invalid_request", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, http.MethodPut, mirrorPath, tc.body)
			if a.status != tc.status || a.errCode() != tc.code {
				t.Errorf("PUT %s: %d %s, want %d %s", tc.body, a.status, a.raw, tc.status, tc.code)
			}
			if strings.Contains(a.raw, testdata.UpstreamPassword) {
				t.Errorf("the answer shows the password: %s", a.raw)
			}
			if a := f.do(t, http.MethodGet, mirrorPath, ""); a.status != http.StatusNotFound {
				t.Errorf("after a refused PUT the project exists: %d %s", a.status, a.raw)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(f.root, ".mirrors", "mirrors")); !os.IsNotExist(err) {
		t.Errorf("a refused PUT staged something (%v)", err)
	}
	if f.upstream.Fetches()+f.upstream.Refused() != 0 {
		t.Errorf("a refused PUT reached the upstream")
	}

	// A local project is no mirror: neither registered over nor deleted.
	before, _ := gitIn(t, f.git.Dir, "for-each-ref")
	if a := f.do(t, http.MethodPut, p, fmt.Sprintf(`{"upstream": %q}`, u)); a.status != http.StatusConflict || a.errCode() != "project_conflict" {
		t.Errorf("PUT over a local project: %d %s, want 409 project_conflict", a.status, a.raw)
	}
	if a := f.do(t, http.MethodDelete, p, ""); a.status != http.StatusConflict || a.errCode() != "project_conflict" {
		t.Errorf("DELETE of a local project: %d %s, want 409 project_conflict", a.status, a.raw)
	}
	after, _ := gitIn(t, f.git.Dir, "for-each-ref")
	if before != after {
		t.Errorf("the local project changed:\n%s\n->\n%s", before, after)
	}
	if a := f.do(t, http.MethodGet, p, ""); a.status != http.StatusOK || a.body["kind"] != "local" || a.body["state"] != "ready" {
		t.Errorf("GET local: %d %s", a.status, a.raw)
	}
}

func TestMirrorCloneFailsThenRetries(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream
	writeCredentials(t, f.creds, f.upstream, "wrong-password")
	if a := f.register(t, "gitlab"); a.status != http.StatusAccepted {
		t.Fatalf("PUT: %d %s", a.status, a.raw)
	}
	a := f.awaitState(t, mirrorPath)
	msg, _ := a.body["last_error"].(string)
	if a.body["state"] != "failed" || !strings.Contains(msg, "credentials refused") || a.body["fetched_at"] != nil {
		t.Fatalf("clone with a wrong password: %s, want failed, credentials refused, never fetched", a.raw)
	}
	if strings.Contains(a.raw, "wrong-password") || strings.Contains(a.raw, testdata.UpstreamPassword) {
		t.Errorf("the answer shows a password: %s", a.raw)
	}
	if _, err := os.Stat(filepath.Join(f.root, "mirrors", "gh.git")); !os.IsNotExist(err) {
		t.Errorf("a failed clone is in place (%v)", err)
	}
	// The file is fixed (a rotated token): the next PUT uses it.
	writeCredentials(t, f.creds, f.upstream, testdata.UpstreamPassword)
	if a := f.register(t, "gitlab"); a.status != http.StatusAccepted {
		t.Fatalf("PUT again: %d %s, want 202", a.status, a.raw)
	}
	if a := f.awaitState(t, mirrorPath); a.body["state"] != "ready" || a.body["last_error"] != nil {
		t.Fatalf("retried clone: %s, want ready", a.raw)
	}
	if got, _ := gitIn(t, filepath.Join(f.root, "mirrors", "gh.git"), "rev-parse", "refs/merge-requests/1/merge"); got != u.Merge {
		t.Errorf("gitlab mirror's merge ref = %q, want %s", got, u.Merge)
	}
}

func TestMirrorPinsFetchFromUpstream(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream
	f.readyMirror(t, "github")
	pin := func(id int, body string) answer {
		return f.do(t, http.MethodPut, fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", id), body)
	}
	mirrorDir := filepath.Join(f.root, "mirrors", "gh.git")

	if a := pin(1, `{"merge_request_iid": 1}`); a.status != http.StatusCreated || a.body["sha"] != u.Merge {
		t.Fatalf("pin by merge request: %d %s, want 201 at %s", a.status, a.raw, u.Merge)
	}
	// The host recomputes its merge ref: the next pipeline gets the new
	// one, the first keeps its own.
	u.Repo.Commit(t, "main", map[string]string{"app.txt": "v3\n"}, "third")
	moved := u.Repo.SetMergeRequestRef(t, 1, "main", "feature")
	u.Repo.Git(t, "update-ref", "refs/pull/1/merge", moved)
	if a := pin(2, `{"merge_request_iid": 1}`); a.status != http.StatusCreated || a.body["sha"] != moved {
		t.Fatalf("pin after the merge ref moved: %d %s, want 201 at %s", a.status, a.raw, moved)
	}
	if got, _ := gitIn(t, mirrorDir, "rev-parse", "refs/pipelines/1"); got != u.Merge {
		t.Errorf("refs/pipelines/1 = %s, want the first merge %s", got, u.Merge)
	}
	if a := pin(1, `{"merge_request_iid": 1}`); a.status != http.StatusOK || a.body["sha"] != u.Merge {
		t.Errorf("pipeline 1 again: %d %s, want 200 at its own %s", a.status, a.raw, u.Merge)
	}

	// A SHA the mirror lacks is fetched by SHA.
	extra := u.Repo.Commit(t, "side", map[string]string{"side.txt": "x\n"}, "side")
	if a := pin(3, `{"sha": "`+extra+`"}`); a.status != http.StatusCreated || a.body["sha"] != extra {
		t.Errorf("pin by a SHA only upstream has: %d %s, want 201", a.status, a.raw)
	}
	if a := pin(4, `{"sha": "1f3e000000000000000000000000000000000001"}`); a.status != http.StatusUnprocessableEntity || a.errCode() != "commit_not_found" {
		t.Errorf("pin by a SHA nobody has: %d %s, want 422 commit_not_found", a.status, a.raw)
	}
	if a := pin(5, `{"merge_request_iid": 9}`); a.status != http.StatusUnprocessableEntity || a.errCode() != "merge_ref_not_found" {
		t.Errorf("pin of a merge request upstream lacks: %d %s, want 422 merge_ref_not_found", a.status, a.raw)
	}

	noneWritten := func(t *testing.T, id int) {
		t.Helper()
		if out, _ := gitIn(t, mirrorDir, "for-each-ref", fmt.Sprintf("refs/pipelines/%d", id)); out != "" {
			t.Errorf("a failed pin wrote %s", out)
		}
		if a := f.do(t, http.MethodGet, fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", id), ""); a.status != http.StatusNotFound {
			t.Errorf("a failed pin left a record: %d %s", a.status, a.raw)
		}
	}
	for _, id := range []int{4, 5} {
		noneWritten(t, id)
	}

	// The credential is rotated upstream but not in the file: 502.
	u.SetPassword("rotated")
	if a := pin(6, `{"merge_request_iid": 1}`); a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" {
		t.Errorf("pin with a refused credential: %d %s, want 502 upstream_rejected", a.status, a.raw)
	} else if strings.Contains(a.raw, testdata.UpstreamPassword) {
		t.Errorf("the answer shows the password: %s", a.raw)
	}
	noneWritten(t, 6)
	// The file catches up: read again, the next pin works.
	writeCredentials(t, f.creds, f.upstream, "rotated")
	if a := pin(6, `{"merge_request_iid": 1}`); a.status != http.StatusCreated {
		t.Errorf("pin after the credentials file changed: %d %s, want 201", a.status, a.raw)
	}

	// The upstream goes away: 503 with Retry-After, nothing written.
	u.Stop()
	a := pin(8, `{"merge_request_iid": 1}`)
	if a.status != http.StatusServiceUnavailable || a.errCode() != "upstream_unavailable" || a.header.Get("Retry-After") == "" {
		t.Errorf("pin with the upstream stopped: %d %s, want 503 upstream_unavailable with Retry-After", a.status, a.raw)
	}
	noneWritten(t, 8)
}

func TestMirrorPinStalledUpstreamTimesOut(t *testing.T) {
	// The clone runs under a minute, which a loaded machine needs; the
	// pin's fetch under 2 s.
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "github")
	f.projects.UpstreamTimeout = 2 * time.Second
	f.projects.Fetcher.Timeout = 2 * time.Second
	f.upstream.Stall()
	a := f.do(t, http.MethodPut, "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref", `{"merge_request_iid": 1}`)
	if a.status != http.StatusServiceUnavailable || a.errCode() != "upstream_unavailable" || a.header.Get("Retry-After") == "" {
		t.Errorf("pin with the upstream stalled past --upstream-timeout: %d %s, want 503 upstream_unavailable", a.status, a.raw)
	}
	f.upstream.Release()
	if a := f.do(t, http.MethodGet, "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref", ""); a.status != http.StatusNotFound {
		t.Errorf("a timed-out pin left a record: %d %s", a.status, a.raw)
	}
}

func TestMirrorHostKindsWithoutMergeRef(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "gitea")
	before := f.upstream.Fetches()
	a := f.do(t, http.MethodPut, "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref", `{"merge_request_iid": 1}`)
	if a.status != http.StatusUnprocessableEntity || a.errCode() != "merge_ref_not_found" {
		t.Errorf("pin by merge request on a gitea mirror: %d %s, want 422 merge_ref_not_found", a.status, a.raw)
	}
	if f.upstream.Fetches() != before {
		t.Errorf("a gitea pin by merge request fetched from upstream")
	}
}

func TestMirrorConcurrentPinsShareFetches(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "github")
	before := f.upstream.Fetches()
	// The first pin's fetch hangs upstream until every other pin has
	// arrived, so they all queue behind it.
	f.upstream.Stall()
	const pins = 30
	var wg sync.WaitGroup
	answers := make([]answer, pins)
	for i := range pins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = f.do(t, http.MethodPut, fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", 100+i), `{"merge_request_iid": 1}`)
		}()
		if i == 0 {
			waitUntil(t, func() bool { return f.upstream.Stalled() > 0 })
		}
	}
	// Every other pin waits for the next fetch: release the first.
	dir := filepath.Join(f.root, "mirrors", "gh.git")
	waitUntil(t, func() bool { n, _ := f.projects.Fetcher.Queued(dir); return n == pins-1 })
	f.upstream.Release()
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusCreated || a.body["sha"] != f.upstream.Merge {
			t.Errorf("pin %d: %d %s", i, a.status, a.raw)
		}
	}
	if got := f.upstream.Fetches() - before; got > 2 {
		t.Errorf("%d concurrent pins caused %d upstream fetches, want at most 2", pins, got)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A credential bound to hosts is refused for an upstream elsewhere (whoever
// may register mirrors cannot send it to a server of their own), and one
// bound to projects for another project: 403 upstream_not_allowed.
func TestMirrorCredentialBoundToHosts(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream.URL()
	body, _ := json.Marshal(map[string]map[string]any{
		"upstream": {"username": testdata.UpstreamUser, "password": testdata.UpstreamPassword, "hosts": []string{"github.com"}},
	})
	if err := os.WriteFile(f.creds, body, 0o600); err != nil {
		t.Fatal(err)
	}
	a := f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q, "credential": "upstream"}`, u))
	if a.status != http.StatusForbidden || a.errCode() != "upstream_not_allowed" {
		t.Fatalf("PUT with a credential for other hosts: %d %s, want 403 upstream_not_allowed", a.status, a.raw)
	}
	body, _ = json.Marshal(map[string]map[string]any{
		"upstream": {"username": testdata.UpstreamUser, "password": testdata.UpstreamPassword,
			"hosts": []string{f.upstream.CredentialHost()}, "projects": []string{"acme/*"}},
	})
	if err := os.WriteFile(f.creds, body, 0o600); err != nil {
		t.Fatal(err)
	}
	a = f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q, "credential": "upstream"}`, u))
	if a.status != http.StatusForbidden || a.errCode() != "upstream_not_allowed" {
		t.Fatalf("PUT with a credential for other projects: %d %s, want 403 upstream_not_allowed", a.status, a.raw)
	}
	// A name not in the file answers exactly the same: no name oracle.
	unknown := f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q, "credential": "nobody"}`, u))
	if unknown.status != a.status || unknown.raw != a.raw {
		t.Errorf("an unknown credential answers %d %s, a forbidden one %d %s: they must not differ", unknown.status, unknown.raw, a.status, a.raw)
	}
	if a := f.do(t, http.MethodGet, mirrorPath, ""); a.status != http.StatusNotFound {
		t.Errorf("after a refused PUT the project exists: %d %s", a.status, a.raw)
	}
	if f.upstream.Fetches()+f.upstream.Refused() != 0 {
		t.Errorf("a refused PUT reached the upstream")
	}
}

// A project name with a segment ending in .git would lie inside another
// project's repository; a last segment too long for a directory entry
// cannot be stored. Both are bad input (400), never an outage (503), and
// nothing is made.
func TestMirrorNamesThatCannotBeRepositories(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	body := fmt.Sprintf(`{"upstream": %q, "credential": "upstream"}`, f.upstream.URL())
	for _, name := range []string{"group/app.git/x", "group/app.git", "m/" + strings.Repeat("a", 252), strings.Repeat("b", 253)} {
		a := f.do(t, http.MethodPut, "/api/v1/projects/"+strings.ReplaceAll(name, "/", "%2F"), body)
		if a.status != http.StatusBadRequest || a.errCode() != "invalid_request" {
			t.Errorf("PUT mirror %.40s…: %d %s, want 400 invalid_request", name, a.status, a.raw)
		}
		a = f.do(t, http.MethodPut, "/api/v1/projects/"+strings.ReplaceAll(name, "/", "%2F")+"/pipelines/7/ref", fmt.Sprintf(`{"sha": %q}`, f.c1))
		if a.status != http.StatusBadRequest || a.errCode() != "invalid_request" {
			t.Errorf("PUT pin in %.40s…: %d %s, want 400 invalid_request", name, a.status, a.raw)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(f.root, ".mirrors")); len(entries) != 0 {
		t.Errorf("a refused name left %d entries in the staging area", len(entries))
	}
	if _, err := os.Stat(filepath.Join(f.root, "group", "app.git", "x.git")); !os.IsNotExist(err) {
		t.Errorf("a project was made inside group/app's repository (%v)", err)
	}
}

// With the default policy a loopback upstream is refused at once, as 403
// upstream_not_allowed, before anything is written or connected to.
func TestMirrorLoopbackUpstreamRefusedByDefault(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.projects.Policy = nil // the default, https://*
	for _, up := range []string{f.upstream.URL(), strings.Replace(f.upstream.URL(), "127.0.0.1", "localhost", 1), "http://169.254.169.254/latest/meta-data/", "file://" + f.upstream.Repo.Dir} {
		a := f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q}`, up))
		if a.status != http.StatusForbidden || a.errCode() != "upstream_not_allowed" {
			t.Errorf("PUT mirror of %s: %d %s, want 403 upstream_not_allowed", up, a.status, a.raw)
		}
	}
	if a := f.do(t, http.MethodGet, mirrorPath, ""); a.status != http.StatusNotFound {
		t.Errorf("after refused PUTs the project exists: %d %s", a.status, a.raw)
	}
	if n := f.upstream.Fetches() + f.upstream.Refused(); n != 0 {
		t.Errorf("the loopback upstream was reached %d times", n)
	}
}
