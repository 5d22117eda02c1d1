package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The server in this tree does not serve mirrored projects yet.
// TestCLIContract checks the projects commands against an
// httptest server that answers exactly the contract's shapes (API.md);
// once the server has them, this test belongs against it, like TestCLI.
func TestCLIContract(t *testing.T) {
	const mirror = `{"project": "group/mirror", "kind": "mirror", "state": "cloning", "upstream": "https://git.example.com/group/app.git", "host": "github", "credential": "gh", "fetched_at": null, "last_error": null}`
	const local = `{"project": "group/app", "kind": "local", "state": "ready", "upstream": null, "host": null, "credential": null, "fetched_at": null, "last_error": null}`
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
	} {
		code, out, errOut := cliRun(t, env, nil, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v = %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}
