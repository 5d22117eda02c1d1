package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The server in this tree does not serve mirrored projects or computed
// merges yet. TestCLIContract checks the commands that use them against an
// httptest server that answers exactly the contract's shapes (API.md);
// once the server has them, this test belongs against it, like TestCLI.
func TestCLIContract(t *testing.T) {
	const mirror = `{"project": "group/mirror", "kind": "mirror", "state": "cloning", "upstream": "https://git.example.com/group/app.git", "host": "github", "credential": "gh", "fetched_at": null, "last_error": null}`
	const local = `{"project": "group/app", "kind": "local", "state": "ready", "upstream": null, "host": null, "credential": null, "fetched_at": null, "last_error": null}`
	const mergePin = `{"project": "group/app", "pipeline_id": 7, "ref": "refs/pipelines/7", "sha": "1f3e000000000000000000000000000000000000", "refspec": "+refs/pipelines/7:refs/pipelines/7", "fetch_url": "http://127.0.0.1:8080/git/group/app.git", "fetch_token": "t0k", "merge_request_iid": 12, "state": "pinned", "created_at": "2026-11-22T10:00:00Z", "finished_at": null, "expires_at": null, "merge": {"source_sha": "aaaa000000000000000000000000000000000000", "target_sha": "bbbb000000000000000000000000000000000000", "mode": "squash"}}`
	type answer struct {
		status        int
		body, wantReq string
	}
	answers := map[string]answer{
		"PUT /api/v1/projects/group%2Fmirror":    {202, mirror, `{"upstream":"https://git.example.com/group/app.git","host":"github","credential":"gh"}`},
		"GET /api/v1/projects/group%2Fmirror":    {200, mirror, ""},
		"GET /api/v1/projects":                   {200, `{"projects": [` + local + `,` + mirror + `], "next_cursor": null}`, ""},
		"DELETE /api/v1/projects/group%2Fmirror": {204, "", ""},
		"DELETE /api/v1/projects/group%2Fapp":    {409, `{"error": {"code": "project_conflict", "message": "group/app is a local project"}}`, ""},
		"PUT /api/v1/projects/group%2Fapp/pipelines/7/ref": {201, mergePin,
			`{"merge_request_iid":12,"merge":{"source":"feature","target":"main","mode":"squash"}}`},
		"PUT /api/v1/projects/group%2Fapp/pipelines/8/ref": {409,
			`{"error": {"code": "merge_conflict", "message": "the merge has conflicts", "conflicts": ["app.txt"]}}`, ""},
	}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		path, _, _ := strings.Cut(r.RequestURI, "?")
		mu.Lock()
		a, ok := answers[r.Method+" "+path]
		mu.Unlock()
		if !ok || r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("unexpected %s %s", r.Method, r.RequestURI)
			w.WriteHeader(404)
			return
		}
		if a.wantReq != "" && string(body) != a.wantReq {
			t.Errorf("%s %s: body %s, want %s", r.Method, path, body, a.wantReq)
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	defer srv.Close()
	env := map[string]string{"REFKEEPER_URL": srv.URL, "REFKEEPER_TOKEN": testToken}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"projects", "mirror", "group/mirror", "--upstream", "https://git.example.com/group/app.git", "--host", "github", "--credential", "gh"}, 0, "cloning"},
		{[]string{"projects", "get", "group/mirror", "--json"}, 0, `"upstream": "https://git.example.com/group/app.git"`},
		{[]string{"projects"}, 0, "group/app     local   ready"},
		{[]string{"projects", "list", "--json"}, 0, `"next_cursor": null`},
		{[]string{"projects", "delete", "group/mirror"}, 0, "deleted mirror group/mirror"},
		{[]string{"projects", "delete", "group/app"}, 1, "project_conflict"},
		{[]string{"projects", "mirror", "group/mirror"}, 2, "--upstream is required"},
		{[]string{"pin", "group/app", "7", "--merge-request", "12", "--merge-source", "feature", "--merge-target", "main", "--squash"}, 0, "squash of aaaa000000000000000000000000000000000000 into bbbb"},
		{[]string{"pin", "group/app", "8", "--merge-source", "a", "--merge-target", "main"}, 1, "merge_conflict: the merge has conflicts (conflicts: app.txt)"},
		{[]string{"pin", "group/app", "8", "--merge-source", "a"}, 2, "need --merge-target"},
	} {
		code, out, errOut := cliRun(t, env, nil, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v = %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}
