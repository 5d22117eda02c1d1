package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/idtoken"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// The document describes every route the server registers but the git
// smart-HTTP mount, which speaks git's protocol, not JSON (the document's
// description says so), and the web page, which is HTML for people.
var undocumentedRoutes = map[string]bool{"/git/*": true, "/ui": true, "/ui/*": true}

// onlyDocumented are documented answers of routed operations that the
// table cannot produce here, with the reason. An entry the table does
// produce fails the test (the list must not go stale).
var onlyDocumented = map[string]string{
	"GET /api/v1/projects 503":           noRedis,
	"GET /api/v1/projects/{project} 503": noRedis,
	"PUT /api/v1/projects/{project} 503": noRedis,
	// The resource bounds, each produced by its own test.
	"PUT /api/v1/projects/{project} 408":                             slowBodyOnly,
	"POST /api/v1/projects/{project}/merge_requests/{iid}/close 408": slowBodyOnly,
	"POST /hooks/github 408":                                         slowBodyOnly,
	"POST /api/v1/projects/{project}/pipelines/{id}/finish 408":      slowBodyOnly,
	"POST /hooks/gitlab 408":                                         slowBodyOnly,
	"POST /api/v1/gc 408":                                            slowBodyOnly,
	"POST /hooks/gitea 408":                                          slowBodyOnly,
	"PUT /api/v1/projects/{project}/pipelines/{id}/ref 408":          slowBodyOnly,
	"PUT /api/v1/projects/{project} 507":                             belowFloorOnly,
	"PUT /api/v1/projects/{project}/pipelines/{id}/ref 507":          belowFloorOnly,
}

const slowBodyOnly = "only a body that arrives slower than the body deadline: TestSlowBodyIsCut"

const belowFloorOnly = "only with the repos root below --min-free-disk: systest's TestDiskFloorEndToEnd"

const noRedis = "projects are read from and written to git config, so Redis down does not reach it; a held config lock would"

// Every routed operation may answer 500 internal; nothing a client sends
// causes one, so no row produces it.
const internalStatus = "500"

// contract is the OpenAPI document with a router over it, and the
// operation statuses real answers were validated against.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	seen   map[string]bool // "METHOD /path status"
}

func loadContract(t *testing.T, raw []byte) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("the document is not valid OpenAPI 3.1: %v", err)
	}
	// Validate does not hold the schemas' own examples to them.
	for name, s := range doc.Components.Schemas {
		for i, ex := range s.Value.Examples {
			if err := s.Value.VisitJSON(ex, openapi3.EnableJSONSchema2020()); err != nil {
				t.Fatalf("example %d of schema %s does not match it: %v", i, name, err)
			}
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router, seen: map[string]bool{}}
}

// call is one real request and the answer the table expects of it.
type call struct {
	name, method, path, body string
	// headers are "Name: value"; "Name: " removes one. A bearer token and,
	// with a body, a JSON content type are sent unless removed.
	headers []string
	status  int
	code    string // the error code of a 4xx or 5xx
	// docRejects: the document's own schemas reject this bad request too,
	// so clients that validate against it learn the same rule.
	docRejects bool
}

// bearerOnly stands in for the server's auth during request validation:
// a request the server accepted must carry the document's scheme.
func bearerOnly(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || s.Scheme != "bearer" {
		return fmt.Errorf("unexpected security scheme %s", in.SecuritySchemeName)
	}
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return errors.New("no bearer token")
	}
	return nil
}

// send makes the request against base, checks the answer is the one the
// table expects and that the document describes it (see check).
func (k *contract) send(t *testing.T, base string, c call) answer {
	t.Helper()
	a := exchange(t, base, c)
	if a.status != c.status || a.errCode() != c.code {
		t.Fatalf("%s: %s %s = %d %q, want %d %q: %s", c.name, c.method, c.path, a.status, a.errCode(), c.status, c.code, a.raw)
	}
	if err := k.check(t.Context(), base, c, a); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return a
}

// request builds c's request against base.
func (c call) request(base string) *http.Request {
	req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	req.Header.Set("Authorization", "Bearer "+token)
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range c.headers {
		name, v, _ := strings.Cut(h, ": ")
		if v == "" {
			req.Header.Del(name)
		} else {
			req.Header.Set(name, v)
		}
	}
	return req
}

// exchange sends c and reads the answer.
func exchange(t *testing.T, base string, c call) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(c.request(base))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s: invalid JSON %q", c.name, raw)
		}
	}
	return a
}

// check validates an answer to c against the document: its operation, its
// status, its headers and its body. A request the server accepted (2xx)
// must also be one the document accepts. It records the operation's status
// as seen.
func (k *contract) check(ctx context.Context, base string, c call, a answer) error {
	req := c.request(base)
	route, params, err := k.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s is not in the document: %w", c.method, c.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerOnly, MultiError: true}}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case a.status < 300 && reqErr != nil:
		return fmt.Errorf("the server accepted a request the document rejects: %w", reqErr)
	case c.docRejects && reqErr == nil:
		return fmt.Errorf("the server rejected with %d a request the document accepts", a.status)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: a.status, Header: a.header,
		Body:    io.NopCloser(strings.NewReader(a.raw)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s %s answered %d %s, which the document does not describe: %w", c.method, c.path, a.status, a.raw, err)
	}
	if doc := route.Operation.Responses.Status(a.status); doc != nil && len(doc.Value.Content) == 0 && a.raw != "" {
		return fmt.Errorf("%d has a body %q, the document none", a.status, a.raw)
	}
	k.seen[route.Method+" "+route.Path+" "+strconv.Itoa(a.status)] = true
	return nil
}

// docOperations lists "METHOD /path" of every operation in the document.
func (k *contract) docOperations() map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range k.doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	return ops
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// TestOpenAPIRoutes: every route the server registers, with projects and
// every host's webhook on, is in the document, and every operation of the
// document is a route.
func TestOpenAPIRoutes(t *testing.T) {
	f := newFixture(t, withProjects(t), withHooks(hooks.GitLab, hooks.GitHub, hooks.Gitea))
	k := loadContract(t, fetchDocument(t, f.srv.URL))
	e, ok := f.srv.Config.Handler.(*echo.Echo)
	if !ok {
		t.Fatalf("api.New gave a %T, not an *echo.Echo: list its routes another way", f.srv.Config.Handler)
	}
	if len(e.Routes()) < 2 {
		t.Fatal("no routes listed: the check proves nothing")
	}
	for _, m := range routeMismatches(e, k) {
		t.Error(m)
	}
}

// routeMismatches compares the routes e registers with the document's
// operations, both ways.
func routeMismatches(e *echo.Echo, k *contract) []string {
	var out []string
	ops := k.docOperations()
	routed := map[string]bool{}
	for _, r := range e.Routes() {
		if undocumentedRoutes[r.Path] {
			continue
		}
		key := r.Method + " " + echoParam.ReplaceAllString(r.Path, "{$1}")
		routed[key] = true
		if ops[key] == nil {
			out = append(out, fmt.Sprintf("route %s is not in api/openapi.json", key))
		}
	}
	for key := range ops {
		if !routed[key] {
			out = append(out, fmt.Sprintf("%s is documented but not routed", key))
		}
	}
	slices.Sort(out)
	return out
}

// fetchDocument is GET /api/v1/openapi.json without a token.
func fetchDocument(t *testing.T, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET openapi.json = %d %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	return raw
}

// TestOpenAPIServedIsTheFile: the server answers the embedded file itself,
// with an ETag that revalidates.
func TestOpenAPIServedIsTheFile(t *testing.T) {
	f := newFixture(t)
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if served := fetchDocument(t, f.srv.URL); !bytes.Equal(served, file) {
		t.Fatal("the served document is not api/openapi.json")
	}
}

// TestOpenAPIAnswers sends real requests to a real server (real git
// repositories, a real redis-server) for every routed operation and every
// answer of it the document lists, and validates each answer against the
// document. A documented answer no row produces fails the test unless
// onlyDocumented says why.
func TestOpenAPIAnswers(t *testing.T) {
	allHooks := withHooks(hooks.GitLab, hooks.GitHub, hooks.Gitea)
	iss := testdata.StartIssuer(t)
	f := newFixture(t, withProjects(t), allHooks, withIdentities(t, iss))
	k := loadContract(t, fetchDocument(t, f.srv.URL))
	// A CI job's ID token of pipeline 71 of group/app.
	job := asToken(iss.Token(t, testdata.GitLabClaims("group/app", 71, testdata.IssuerAudience)))
	head := f.withHead(t)
	f.git.Git(t, "branch", "conflict", f.c1)
	conflicting := f.git.Commit(t, "conflict", map[string]string{"app.txt": "other\n"}, "conflicting edit")
	unrelated := f.git.Commit(t, "orphan", map[string]string{"other.txt": "x\n"}, "no common history")
	const missing = "1234567890123456789012345678901234567890"
	good := `{"sha":"` + f.c1 + `"}`
	big := `{"status":"` + strings.Repeat("a", 70<<10) + `"}`
	noToken := []string{"Authorization: "}
	textPlain := []string{"Content-Type: text/plain"}
	const nope = "/api/v1/projects/nope"
	const bad = "/api/v1/projects/..%2Fetc"

	// One request per operation, for the answers every operation can give.
	// An upstream the policy of withProjects allows (a directory, no
	// repository: its clone fails later).
	nowhere := filepath.Join(t.TempDir(), "nowhere.git")
	if err := os.Mkdir(nowhere, 0o755); err != nil {
		t.Fatal(err)
	}
	every := []call{
		{method: "PUT", path: p + "/pipelines/70/ref", body: good},
		{method: "GET", path: p + "/pipelines/70/ref"},
		{method: "DELETE", path: p + "/pipelines/70/ref"},
		{method: "POST", path: p + "/pipelines/70/finish"},
		{method: "GET", path: p + "/pipelines"},
		{method: "POST", path: p + "/merge_requests/12/close"},
		{method: "POST", path: "/api/v1/gc"},
		{method: "GET", path: "/api/v1/projects"},
		{method: "PUT", path: "/api/v1/projects/mirrors%2Fx", body: `{"upstream":"file://` + nowhere + `"}`},
		{method: "GET", path: p},
		{method: "DELETE", path: "/api/v1/projects/mirrors%2Fx"},
	}
	vars := map[string]string{"HEAD_SHA": head, "BASE_SHA": f.c2, "SHA": f.merge}
	// One delivery per host, for the answers every hook can give.
	everyHook := []call{
		gitlabHook("Pipeline Hook", testdata.HookPayload(t, "gitlab-pipeline-success.json", vars), "Idempotency-Key: every-1"),
		githubHook("workflow_run", testdata.HookPayload(t, "github-workflow_run-completed.json", vars), "X-GitHub-Delivery: every-1"),
		giteaHook("pull_request", testdata.HookPayload(t, "gitea-pull_request-closed.json", vars), "X-Gitea-Delivery: every-1"),
	}
	rows := []call{
		{name: "pin by sha", method: "PUT", path: p + "/pipelines/7/ref", body: `{"sha":"` + f.c1 + `","merge_request_iid":12}`, status: 201},
		{name: "pin again", method: "PUT", path: p + "/pipelines/7/ref", body: good, status: 200},
		{name: "pin elsewhere", method: "PUT", path: p + "/pipelines/7/ref", body: `{"sha":"` + f.c2 + `"}`, status: 409, code: "ref_conflict"},
		{name: "pin by merge request", method: "PUT", path: p + "/pipelines/8/ref", body: `{"merge_request_iid":12}`, status: 201},
		{name: "pin a computed merge", method: "PUT", path: p + "/pipelines/9/ref", body: `{"merge":{"target":"main"},"merge_request_iid":12}`, status: 201},
		{name: "pin a computed merge again", method: "PUT", path: p + "/pipelines/9/ref", body: `{"merge":{"source":"` + head + `","target":"` + f.c2 + `","mode":"merge"}}`, status: 200},
		{name: "merge conflict", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge":{"source":"` + conflicting + `","target":"main"}}`, status: 409, code: "merge_conflict"},
		{name: "merge without common history", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge":{"source":"` + unrelated + `","target":"main","mode":"squash"}}`, status: 409, code: "merge_conflict"},
		{name: "no merge ref", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge_request_iid":13}`, status: 422, code: "merge_ref_not_found"},
		{name: "no such commit", method: "PUT", path: p + "/pipelines/10/ref", body: `{"sha":"` + missing + `"}`, status: 422, code: "commit_not_found"},
		{name: "no such ref", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge":{"source":"feature","target":"nope"}}`, status: 422, code: "ref_not_found"},
		{name: "pin in no project", method: "PUT", path: nope + "/pipelines/10/ref", body: good, status: 404, code: "project_not_found"},
		{name: "pin id 0", method: "PUT", path: p + "/pipelines/0/ref", body: good, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin bad sha", method: "PUT", path: p + "/pipelines/10/ref", body: `{"sha":"abc"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin unknown field", method: "PUT", path: p + "/pipelines/10/ref", body: `{"sha":"` + f.c1 + `","ref":"x"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin malformed JSON", method: "PUT", path: p + "/pipelines/10/ref", body: `{"sha":`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin sha and merge", method: "PUT", path: p + "/pipelines/10/ref", body: `{"sha":"` + f.c1 + `","merge":{"source":"feature","target":"main"}}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin empty object", method: "PUT", path: p + "/pipelines/10/ref", body: `{}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin iid as string", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge_request_iid":"12"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin merge without target", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge":{"source":"feature"}}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin bad merge mode", method: "PUT", path: p + "/pipelines/10/ref", body: `{"merge":{"source":"feature","target":"main","mode":"rebase"}}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "pin too large", method: "PUT", path: p + "/pipelines/10/ref", body: big, status: 413, code: "payload_too_large"},
		{name: "pin as text", method: "PUT", path: p + "/pipelines/10/ref", body: good, headers: textPlain, status: 415, code: "unsupported_media_type"},

		{name: "get", method: "GET", path: p + "/pipelines/9/ref", status: 200},
		{name: "get no pin", method: "GET", path: p + "/pipelines/99/ref", status: 404, code: "pin_not_found"},
		{name: "get in no project", method: "GET", path: nope + "/pipelines/7/ref", status: 404, code: "project_not_found"},
		{name: "get id 01", method: "GET", path: p + "/pipelines/01/ref", status: 400, code: "invalid_request"},

		{name: "finish", method: "POST", path: p + "/pipelines/7/finish", body: `{"status":"success"}`, status: 200},
		{name: "finish without body", method: "POST", path: p + "/pipelines/8/finish", status: 200},
		{name: "finish no pin", method: "POST", path: p + "/pipelines/99/finish", status: 404, code: "pin_not_found"},
		{name: "finish status number", method: "POST", path: p + "/pipelines/7/finish", body: `{"status":1}`, status: 400, code: "invalid_request"},
		{name: "finish too large", method: "POST", path: p + "/pipelines/7/finish", body: big, status: 413, code: "payload_too_large"},
		{name: "finish as text", method: "POST", path: p + "/pipelines/7/finish", body: `{}`, headers: textPlain, status: 415, code: "unsupported_media_type"},

		{name: "list a page", method: "GET", path: p + "/pipelines?state=pinned&limit=1", status: 200},
		{name: "list all", method: "GET", path: p + "/pipelines", status: 200},
		{name: "list in no project", method: "GET", path: nope + "/pipelines", status: 404, code: "project_not_found"},
		{name: "list bad state", method: "GET", path: p + "/pipelines?state=gone", status: 400, code: "invalid_request", docRejects: true},
		{name: "list limit 1001", method: "GET", path: p + "/pipelines?limit=1001", status: 400, code: "invalid_request", docRejects: true},
		{name: "list bad cursor", method: "GET", path: p + "/pipelines?cursor=x", status: 400, code: "invalid_request"},

		{name: "close", method: "POST", path: p + "/merge_requests/12/close", status: 200},
		{name: "close in no project", method: "POST", path: nope + "/merge_requests/12/close", status: 404, code: "project_not_found"},
		{name: "close iid 0", method: "POST", path: p + "/merge_requests/0/close", status: 400, code: "invalid_request", docRejects: true},
		{name: "close too large", method: "POST", path: p + "/merge_requests/12/close", body: big, status: 413, code: "payload_too_large"},
		{name: "close as text", method: "POST", path: p + "/merge_requests/12/close", body: `{}`, headers: textPlain, status: 415, code: "unsupported_media_type"},

		{name: "gc", method: "POST", path: "/api/v1/gc", status: 200},
		{name: "gc auto", method: "POST", path: "/api/v1/gc?reconcile=auto", status: 200},
		{name: "gc bad reconcile", method: "POST", path: "/api/v1/gc?reconcile=never", status: 400, code: "invalid_request", docRejects: true},
		{name: "gc too large", method: "POST", path: "/api/v1/gc", body: big, status: 413, code: "payload_too_large"},
		{name: "gc as text", method: "POST", path: "/api/v1/gc", body: `{}`, headers: textPlain, status: 415, code: "unsupported_media_type"},

		{name: "delete", method: "DELETE", path: p + "/pipelines/7/ref", status: 204},
		{name: "get deleted", method: "GET", path: p + "/pipelines/7/ref", status: 200},
		{name: "delete no pin", method: "DELETE", path: p + "/pipelines/99/ref", status: 404, code: "pin_not_found"},
		{name: "delete in no project", method: "DELETE", path: nope + "/pipelines/99/ref", status: 404, code: "project_not_found"},
		{name: "delete id 2^63", method: "DELETE", path: p + "/pipelines/9223372036854775808/ref", status: 400, code: "invalid_request", docRejects: true},

		{name: "a job pins its pipeline", method: "PUT", path: p + "/pipelines/71/ref", body: good, headers: []string{job}, status: 201},
		{name: "a job pins it again", method: "PUT", path: p + "/pipelines/71/ref", body: good, headers: []string{job}, status: 200},
		{name: "a job gets its pin", method: "GET", path: p + "/pipelines/71/ref", headers: []string{job}, status: 200},
		{name: "a job finishes its pin", method: "POST", path: p + "/pipelines/71/finish", body: `{"status":"success"}`, headers: []string{job}, status: 200},

		{name: "healthz", method: "GET", path: "/healthz", headers: noToken, status: 200},
		{name: "readyz", method: "GET", path: "/readyz", headers: noToken, status: 200},
		{name: "metrics", method: "GET", path: "/metrics", headers: noToken, status: 200},
		{name: "openapi", method: "GET", path: "/api/v1/openapi.json", headers: noToken, status: 200},
	}
	for _, c := range every {
		c.headers, c.status, c.code = noToken, 401, "unauthorized"
		c.name = "no token: " + c.method + " " + c.path
		rows = append(rows, c)
		c.headers = []string{"Authorization: Bearer wrong"}
		c.name = "wrong token: " + c.method + " " + c.path
		rows = append(rows, c)
		// A valid token whose role or projects do not cover the call; a
		// listing of projects is filtered instead.
		if c.path != "/api/v1/projects" {
			forbidden := c
			forbidden.headers, forbidden.status, forbidden.code = []string{asToken(otherToken)}, 403, "forbidden"
			forbidden.name = "another project's token: " + c.method + " " + c.path
			rows = append(rows, forbidden)
		}
		// A job's ID token covers its own pipeline's pin alone: every
		// operation here, the listing of projects too, is 403.
		jobs := c
		jobs.headers, jobs.status, jobs.code = []string{job}, 403, "forbidden"
		jobs.name = "a job's ID token: " + c.method + " " + c.path
		rows = append(rows, jobs)
		if strings.HasPrefix(c.path, p) {
			c.path, c.headers, c.status, c.code = strings.Replace(c.path, p, bad, 1), nil, 400, "invalid_request"
			c.name = "bad project name: " + c.method + " " + c.path
			rows = append(rows, c)
		}
	}
	rows = append(rows, projectRows(t, f)...)
	rows = append(rows, hookRows(t, vars)...)
	var pinned, deleted, merged answer
	for _, c := range rows {
		if c.method == "AWAIT" {
			if a := (&mirrorFixture{fixture: f}).awaitState(t, c.path); a.body["state"] != "ready" {
				t.Fatalf("mirror not ready: %d %s", a.status, a.raw)
			}
			continue
		}
		a := k.send(t, f.srv.URL, c)
		switch c.name {
		case "pin by sha":
			pinned = a
		case "get deleted":
			deleted = a
		case "pin a computed merge":
			merged = a
		case "merge conflict":
			if e, _ := a.body["error"].(map[string]any); e["conflicts"] == nil {
				t.Errorf("merge_conflict without conflicts: %s", a.raw)
			}
		}
	}
	// The rows above went through the branches of the schemas' 3.1 type
	// arrays and oneOfs: null and not.
	if pinned.body["fetch_token"] == nil || pinned.body["merge"] != nil || deleted.body["fetch_token"] != nil ||
		deleted.body["finished_at"] == nil || merged.body["merge"] == nil {
		t.Errorf("the rows do not cover the nullable fields both ways:\n%s\n%s\n%s", pinned.raw, deleted.raw, merged.raw)
	}
	etag := k.send(t, f.srv.URL, call{name: "openapi", method: "GET", path: "/api/v1/openapi.json", status: 200}).header.Get("ETag")
	k.send(t, f.srv.URL, call{name: "openapi revalidated", method: "GET", path: "/api/v1/openapi.json",
		headers: []string{"If-None-Match: " + etag}, status: 304})

	mirrorUpstreamRows(t, k)

	// A host whose secret is not set has no hook.
	off := newFixture(t)
	for _, c := range everyHook {
		c.name, c.status, c.code = "hook off: "+c.path, 404, "not_found"
		k.send(t, off.srv.URL, c)
	}

	// Past a tiny rate limit every operation but the probes answers 429.
	limited := newFixture(t, withProjects(t), allHooks,
		func(c *api.Config) { c.AddressLimit = api.RateLimit{Rate: 0.001, Burst: 1} })
	k.send(t, limited.srv.URL, call{name: "within the burst", method: "GET", path: p + "/pipelines/1/ref", status: 404, code: "pin_not_found"})
	for _, c := range slices.Concat(every, everyHook, []call{{method: "GET", path: "/api/v1/openapi.json"}}) {
		c.name, c.status, c.code = "rate limited: "+c.method+" "+c.path, 429, "rate_limited"
		k.send(t, limited.srv.URL, c)
	}

	// With Redis stopped every operation that needs it answers 503.
	down := newFixture(t, withProjects(t), allHooks)
	down.redis.Stop(t)
	for _, c := range slices.Concat(every, everyHook, []call{{method: "GET", path: "/readyz", headers: noToken}}) {
		c.name, c.status, c.code = "Redis down: "+c.method+" "+c.path, 503, "unavailable"
		// Projects live in their repositories' git config, not in Redis:
		// reading and registering them goes on; the PUT makes the mirror
		// whose deletion (of its pins' records) needs Redis.
		switch c.method + " " + c.path {
		case "GET /api/v1/projects", "GET " + p:
			c.status, c.code = 200, ""
		case "PUT /api/v1/projects/mirrors%2Fx":
			c.status, c.code = 202, ""
		}
		k.send(t, down.srv.URL, c)
	}

	// Every documented answer of a routed operation was produced and
	// validated, or is listed with the reason it cannot be.
	var validated, documented []string
	for key, op := range k.docOperations() {
		for status := range op.Responses.Map() {
			if n, err := strconv.Atoi(status); err != nil || n < 100 || n > 599 {
				t.Errorf("%s: response %q is not a status code", key, status)
			}
			answer := key + " " + status
			reason, listed := onlyDocumented[answer]
			switch {
			case k.seen[answer] && listed:
				t.Errorf("%s is produced now: take it off onlyDocumented", answer)
			case k.seen[answer]:
				validated = append(validated, answer)
			case status == internalStatus:
				documented = append(documented, answer+" (internal)")
			case listed:
				documented = append(documented, answer+" ("+reason+")")
			default:
				t.Errorf("%s is documented but no row produces it: add one, or list it in onlyDocumented with the reason", answer)
			}
		}
	}
	slices.Sort(validated)
	slices.Sort(documented)
	t.Logf("validated against real answers (%d):\n%s", len(validated), strings.Join(validated, "\n"))
	t.Logf("documented only (%d):\n%s", len(documented), strings.Join(documented, "\n"))
}

// tampered is the served document with one change made by edit, on its
// JSON as maps, loaded as a contract.
func tampered(t *testing.T, raw []byte, edit func(doc map[string]any)) *contract {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return loadContract(t, out)
}

// at walks a JSON document by keys.
func at(v any, keys ...string) map[string]any {
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v.(map[string]any)
}

// TestOpenAPIChecksCatchDrift: the checks above fail when the document
// and the server disagree, one way of disagreeing at a time, on real
// answers. Each edit alone must make its answer fail, and the answer must
// pass the untouched document.
func TestOpenAPIChecksCatchDrift(t *testing.T) {
	f := newFixture(t, withProjects(t), withHooks(hooks.GitLab, hooks.GitHub, hooks.Gitea))
	raw := fetchDocument(t, f.srv.URL)
	pinPath := "/api/v1/projects/{project}/pipelines/{id}/ref"
	pin := call{name: "pin", method: "PUT", path: p + "/pipelines/7/ref", body: `{"sha":"` + f.c1 + `"}`, status: 201}
	pinned := exchange(t, f.srv.URL, pin)
	finished := exchange(t, f.srv.URL, call{name: "finish", method: "POST", path: p + "/pipelines/7/finish", status: 200})
	del := call{name: "delete", method: "DELETE", path: p + "/pipelines/7/ref", status: 204}
	deleted := exchange(t, f.srv.URL, del)
	get := call{name: "get deleted", method: "GET", path: p + "/pipelines/7/ref", status: 200}
	gotDeleted := exchange(t, f.srv.URL, get)
	missing := call{name: "get missing", method: "GET", path: p + "/pipelines/99/ref", status: 404, code: "pin_not_found"}
	notFound := exchange(t, f.srv.URL, missing)
	health := call{name: "healthz", method: "GET", path: "/healthz", status: 200}
	healthy := exchange(t, f.srv.URL, health)
	finish := call{name: "finish", method: "POST", path: p + "/pipelines/7/finish", status: 200}

	cases := []struct {
		name string
		edit func(doc map[string]any)
		c    call
		a    answer
	}{
		{"fetch_token not nullable (a 3.1 type array made a plain type)", func(d map[string]any) {
			at(d, "components", "schemas", "Pin", "properties", "fetch_token")["type"] = "string"
		}, get, gotDeleted},
		{"finished_at only null", func(d map[string]any) {
			at(d, "components", "schemas", "Pin", "properties", "finished_at")["type"] = "null"
		}, finish, finished},
		{"a field the server sends left out", func(d map[string]any) {
			delete(at(d, "components", "schemas", "Pin", "properties"), "merge")
		}, pin, pinned},
		{"a status the server answers left out", func(d map[string]any) {
			delete(at(d, "paths", pinPath, "put", "responses"), "201")
		}, pin, pinned},
		{"an error code the server sends left out", func(d map[string]any) {
			// The 404's allOf narrows the error codes; its second element lists them.
			allOf := at(d, "paths", pinPath, "get", "responses", "404", "content", "application/json", "schema")["allOf"].([]any)
			at(allOf[1], "properties", "error", "properties", "code")["enum"] = []any{"project_not_found"}
		}, missing, notFound},
		{"a body where the server sends none", func(d map[string]any) {
			at(d, "paths", pinPath, "delete", "responses", "204")["content"] = map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Pin"}}}
		}, del, deleted},
		{"a header the server does not send", func(d map[string]any) {
			at(d, "paths", "/healthz", "get", "responses", "200")["headers"] = map[string]any{
				"X-Version": map[string]any{"required": true, "schema": map[string]any{"type": "string"}}}
		}, health, healthy},
		{"an operation the server has left out", func(d map[string]any) {
			delete(at(d, "paths"), "/healthz")
		}, health, healthy},
	}
	good := loadContract(t, raw)
	for _, tc := range cases {
		if err := good.check(t.Context(), f.srv.URL, tc.c, tc.a); err != nil {
			t.Fatalf("%s: the untouched document rejects the answer: %v", tc.name, err)
		}
		if err := tampered(t, raw, tc.edit).check(t.Context(), f.srv.URL, tc.c, tc.a); err == nil {
			t.Errorf("%s: the check did not notice", tc.name)
		} else {
			msg := err.Error()
			t.Logf("%s: noticed: ...%s", tc.name, msg[max(0, len(msg)-160):])
		}
	}

	// A route without a document, and a document without a route.
	e := f.srv.Config.Handler.(*echo.Echo)
	noHealth := tampered(t, raw, func(d map[string]any) { delete(at(d, "paths"), "/healthz") })
	if m := routeMismatches(e, noHealth); !slices.Equal(m, []string{"route GET /healthz is not in api/openapi.json"}) {
		t.Errorf("a route left out of the document: %v", m)
	}
	extra := tampered(t, raw, func(d map[string]any) {
		at(d, "paths")["/api/v1/extra"] = map[string]any{"get": map[string]any{"operationId": "extra",
			"responses": map[string]any{"204": map[string]any{"description": "nothing"}}}}
	})
	if m := routeMismatches(e, extra); !slices.Equal(m, []string{"GET /api/v1/extra is documented but not routed"}) {
		t.Errorf("an operation with no route: %v", m)
	}
}

// TestOpenAPIErrorCodes: every error code the package defines (its code*
// constants) is in the document's ErrorCode enum, and every answer's
// narrowed list of codes is drawn from that enum.
func TestOpenAPIErrorCodes(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var enum []string
	for _, c := range at(doc, "components", "schemas", "ErrorCode")["enum"].([]any) {
		enum = append(enum, c.(string))
	}

	fset := gotoken.NewFileSet()
	defined := 0
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, id := range spec.Names {
				if !strings.HasPrefix(id.Name, "code") || i >= len(spec.Values) {
					continue
				}
				lit, ok := spec.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				code, _ := strconv.Unquote(lit.Value)
				defined++
				if !slices.Contains(enum, code) {
					t.Errorf("%s: error code %q (%s) is not in the ErrorCode enum of openapi.json", name, code, id.Name)
				}
			}
			return true
		})
	}
	if defined < 10 {
		t.Fatalf("found %d code constants: the check proves nothing", defined)
	}

	for path, item := range at(doc, "paths") {
		for method, op := range item.(map[string]any) {
			o, ok := op.(map[string]any) // not the path's "parameters"
			if !ok {
				continue
			}
			responses, ok := o["responses"].(map[string]any)
			if !ok {
				continue
			}
			for status, r := range responses {
				for _, code := range narrowedCodes(doc, r.(map[string]any)) {
					if !slices.Contains(enum, code) {
						t.Errorf("%s %s %s lists code %q, which is not in ErrorCode", method, path, status, code)
					}
				}
			}
		}
	}
}

// narrowedCodes are the codes an error answer's allOf allows (following a
// $ref to components.responses).
func narrowedCodes(doc map[string]any, r map[string]any) []string {
	if ref, ok := r["$ref"].(string); ok {
		r = at(doc, "components", "responses", strings.TrimPrefix(ref, "#/components/responses/"))
	}
	content, _ := r["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	schema, _ := media["schema"].(map[string]any)
	allOf, _ := schema["allOf"].([]any)
	if len(allOf) < 2 {
		return nil
	}
	var out []string
	for _, c := range at(allOf[1], "properties", "error", "properties", "code")["enum"].([]any) {
		out = append(out, c.(string))
	}
	return out
}

// TestOpenAPISecurity: the document names the schemes a caller may use
// (bearer API tokens, CI jobs' ID tokens, basic for the git mount), the
// routes of one pin take an ID token, and every operation that needs a
// token lists the 401 of a missing one, the 403 of one that does not
// cover it and the 503 of an issuer that cannot be asked.
func TestOpenAPISecurity(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	k := loadContract(t, raw)
	schemes := k.doc.Components.SecuritySchemes
	for name, want := range map[string]string{"bearer": "bearer", "idToken": "bearer", "basic": "basic"} {
		s := schemes[name]
		if s == nil || s.Value.Type != "http" || s.Value.Scheme != want || s.Value.Description == "" {
			t.Errorf("security scheme %s is missing or not http %s with a description", name, want)
		}
	}
	if s := schemes["idToken"]; s != nil && (s.Value.BearerFormat != "JWT" || !strings.Contains(s.Value.Description, "identities")) {
		t.Errorf("the idToken scheme does not describe ID tokens: %+v", s.Value)
	}
	pinOps := map[string]bool{
		"PUT /api/v1/projects/{project}/pipelines/{id}/ref":     true,
		"GET /api/v1/projects/{project}/pipelines/{id}/ref":     true,
		"POST /api/v1/projects/{project}/pipelines/{id}/finish": true,
	}
	secured := 0
	for key, op := range k.docOperations() {
		reqs := k.doc.Security
		if op.Security != nil {
			reqs = *op.Security
		}
		if len(reqs) == 0 {
			continue
		}
		secured++
		names := map[string]bool{}
		for _, r := range reqs {
			for name := range r {
				names[name] = true
			}
		}
		if !names["bearer"] || names["idToken"] != pinOps[key] || names["basic"] {
			t.Errorf("%s: security %v; want bearer, and idToken exactly on the routes of one pin", key, names)
		}
		for _, status := range []int{401, 403, 503} {
			if op.Responses.Status(status) == nil {
				t.Errorf("%s needs a token but does not list %d", key, status)
			}
		}
	}
	if secured < 10 {
		t.Fatalf("%d operations need a token: the check proves nothing", secured)
	}
}

// withIdentities gives the API the access file of baseTokens with iss
// trusted as a GitLab issuer for group/*, and the ID token verifier.
func withIdentities(t *testing.T, iss *testdata.Issuer) func(*api.Config) {
	path := filepath.Join(t.TempDir(), "access.json")
	body, err := json.Marshal(map[string]any{"tokens": baseTokens(), "identities": []map[string]any{
		{"issuer": iss.URL, "audience": testdata.IssuerAudience, "kind": "gitlab", "projects": []string{"group/*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, path, body)
	return func(cfg *api.Config) {
		cfg.Access = &access.File{Path: path}
		cfg.IDTokens = &idtoken.Verifier{Identities: cfg.Access.Identities}
	}
}

// withProjects serves the projects routes, and pins on mirrors, over the
// fixture's repos root and Redis.
func withProjects(t *testing.T) func(*api.Config) {
	return func(cfg *api.Config) {
		svc := cfg.Pins.(*refs.Service)
		// Its mirrors' upstreams are file:// repositories of the tests.
		policy, err := mirrors.ParseUpstreamPolicy("file://" + os.TempDir() + "/")
		if err != nil {
			t.Fatal(err)
		}
		projects := &mirrors.Projects{Repos: svc.Repos, Fetcher: &gitops.Fetcher{Root: svc.Repos}, Store: svc.Store, Policy: policy}
		t.Cleanup(projects.Close)
		svc.Mirrors = projects
		cfg.Projects = projects
	}
}

// gitlabHook, githubHook and giteaHook are deliveries signed as each host
// signs them, with no bearer token.
func gitlabHook(event string, body []byte, headers ...string) call {
	return call{name: "GitLab " + event, method: "POST", path: "/hooks/gitlab", body: string(body), status: 200,
		headers: append([]string{"Authorization: ", "X-Gitlab-Token: " + hookSecret, "X-Gitlab-Event: " + event}, headers...)}
}

func githubHook(event string, body []byte, headers ...string) call {
	return call{name: "GitHub " + event, method: "POST", path: "/hooks/github", body: string(body), status: 200,
		headers: append([]string{"Authorization: ", "X-GitHub-Event: " + event,
			"X-Hub-Signature-256: sha256=" + testdata.HMACHex(hookSecret, body)}, headers...)}
}

func giteaHook(event string, body []byte, headers ...string) call {
	return call{name: "Gitea " + event, method: "POST", path: "/hooks/gitea", body: string(body), status: 200,
		headers: append([]string{"Authorization: ", "X-Gitea-Event: " + event,
			"X-Gitea-Signature: " + testdata.HMACHex(hookSecret, body)}, headers...)}
}

// hookRows are the webhook rows: real example deliveries of each host
// (testdata/hooks), replayed, and refused ones.
func hookRows(t *testing.T, vars map[string]string) []call {
	requested := testdata.HookPayload(t, "github-workflow_run-requested.json", vars)
	running := testdata.HookEdit(t, testdata.HookPayload(t, "gitlab-pipeline-success.json", vars), `"status": "success"`, `"status": "running"`)
	rows := []call{
		githubHook("workflow_run", requested, "X-GitHub-Delivery: d-1"),
		githubHook("workflow_run", requested, "X-GitHub-Delivery: d-1"), // a redelivery
		githubHook("workflow_run", testdata.HookPayload(t, "github-workflow_run-completed.json", vars), "X-GitHub-Delivery: d-2"),
		githubHook("pull_request", testdata.HookPayload(t, "github-pull_request-closed.json", vars), "X-GitHub-Delivery: d-3"),
		githubHook("push", []byte(`{}`), "X-GitHub-Delivery: d-4"),
		gitlabHook("Pipeline Hook", running, "Idempotency-Key: d-1"),
		gitlabHook("Pipeline Hook", testdata.HookPayload(t, "gitlab-pipeline-success.json", vars), "Idempotency-Key: d-2"),
		gitlabHook("Merge Request Hook", testdata.HookPayload(t, "gitlab-merge_request.json", vars), "X-Gitlab-Webhook-UUID: d-3"),
		giteaHook("pull_request", testdata.HookPayload(t, "gitea-pull_request-closed.json", vars), "X-Gitea-Delivery: d-1"),
	}
	big := []byte(`{"action":"` + strings.Repeat("x", 70<<10) + `"}`)
	for _, sign := range []func(string, []byte, ...string) call{gitlabHook, githubHook, giteaHook} {
		c := sign("pull_request", []byte(`{"action":`))
		c.name, c.status, c.code = c.path+" malformed", 400, "invalid_request"
		rows = append(rows, c)
		c = sign("pull_request", big)
		c.name, c.status, c.code = c.path+" too large", 413, "payload_too_large"
		rows = append(rows, c)
		c = sign("pull_request", []byte(`{}`), "Content-Type: text/plain")
		c.name, c.status, c.code = c.path+" as text", 415, "unsupported_media_type"
		rows = append(rows, c)
		c = sign("pull_request", []byte(`{}`))
		c.body = `{"action":"closed"}` // not what was signed
		if c.path == "/hooks/gitlab" {
			c.headers = append(c.headers, "X-Gitlab-Token: wrong") // GitLab signs nothing
		}
		c.name, c.status, c.code = c.path+" bad signature", 401, "unauthorized"
		rows = append(rows, c)
	}
	return rows
}

// projectRows register a mirror of a file:// upstream, wait for its clone,
// and go through every answer of the projects routes.
func projectRows(t *testing.T, f *fixture) []call {
	up := testdata.NewMergeRequestProject(t, t.TempDir())
	const mirror = "/api/v1/projects/mirrors%2Fup"
	register := `{"upstream":"file://` + up.Dir + `","host":"gitlab"}`
	accepted := call{name: "register a mirror", method: "PUT", path: mirror, body: register, status: 202}
	return []call{
		accepted,
		{name: "await the clone", method: "AWAIT", path: mirror},
		{name: "register again", method: "PUT", path: mirror, body: register, status: 200},
		{name: "register over a local project", method: "PUT", path: p, body: register, status: 409, code: "project_conflict"},
		{name: "register an upstream the policy refuses", method: "PUT", path: "/api/v1/projects/mirrors%2Fno", body: `{"upstream":"file:///etc/x.git"}`, status: 403, code: "upstream_not_allowed"},
		{name: "register with a password in the URL", method: "PUT", path: mirror, body: `{"upstream":"https://u:pw@git.example.com/x.git"}`, status: 400, code: "invalid_request"},
		{name: "register without upstream", method: "PUT", path: mirror, body: `{"host":"gitlab"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "register an unknown host kind", method: "PUT", path: mirror, body: `{"upstream":"file:///x.git","host":"bitbucket"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "register with an unknown field", method: "PUT", path: mirror, body: `{"upstream":"file:///x.git","branch":"main"}`, status: 400, code: "invalid_request", docRejects: true},
		{name: "register too large", method: "PUT", path: mirror, body: `{"upstream":"` + strings.Repeat("a", 70<<10) + `"}`, status: 413, code: "payload_too_large"},
		{name: "register as text", method: "PUT", path: mirror, body: register, headers: []string{"Content-Type: text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "register a bad name", method: "PUT", path: "/api/v1/projects/..%2Fetc", body: register, status: 400, code: "invalid_request"},
		{name: "get the mirror", method: "GET", path: mirror, status: 200},
		{name: "get the local project", method: "GET", path: p, status: 200},
		{name: "get no project", method: "GET", path: "/api/v1/projects/nope", status: 404, code: "project_not_found"},
		{name: "list projects", method: "GET", path: "/api/v1/projects", status: 200},
		{name: "list a page of projects", method: "GET", path: "/api/v1/projects?limit=1", status: 200},
		{name: "list projects, limit 0", method: "GET", path: "/api/v1/projects?limit=0", status: 400, code: "invalid_request", docRejects: true},
		{name: "list projects, bad cursor", method: "GET", path: "/api/v1/projects?cursor=..%2Fx", status: 400, code: "invalid_request"},
		{name: "pin on the mirror", method: "PUT", path: mirror + "/pipelines/1/ref", body: `{"merge_request_iid":12}`, status: 201},
		{name: "delete the mirror", method: "DELETE", path: mirror, status: 204},
		{name: "delete it again", method: "DELETE", path: mirror, status: 404, code: "project_not_found"},
		{name: "delete a local project", method: "DELETE", path: p, status: 409, code: "project_conflict"},
		{name: "delete a bad name", method: "DELETE", path: "/api/v1/projects/..%2Fetc", status: 400, code: "invalid_request"},
	}
}

// mirrorUpstreamRows: a pin on a mirror whose upstream refuses the
// credentials, then is gone.
func mirrorUpstreamRows(t *testing.T, k *contract) {
	m := newMirrorFixture(t, time.Minute)
	m.readyMirror(t, "github")
	pin := func(id int) call {
		return call{method: "PUT", path: fmt.Sprintf("%s/pipelines/%d/ref", mirrorPath, id), body: `{"merge_request_iid":1}`}
	}
	c := pin(1)
	c.name, c.status = "pin on an http mirror", 201
	k.send(t, m.srv.URL, c)
	m.upstream.SetPassword("rotated")
	c = pin(2)
	c.name, c.status, c.code = "upstream refuses the credentials", 502, "upstream_rejected"
	k.send(t, m.srv.URL, c)
	// The operator narrows the credential to other projects: the next
	// fetch of this mirror may no longer use it.
	narrowed, _ := json.Marshal(map[string]map[string]any{"upstream": {"username": testdata.UpstreamUser,
		"password": "rotated", "hosts": []string{m.upstream.CredentialHost()}, "projects": []string{"acme/*"}}})
	if err := os.WriteFile(m.creds, narrowed, 0o600); err != nil {
		t.Fatal(err)
	}
	c = pin(4)
	c.name, c.status, c.code = "the credential is not for the project", 403, "upstream_not_allowed"
	k.send(t, m.srv.URL, c)
	writeCredentials(t, m.creds, m.upstream, "rotated")
	m.upstream.Stop()
	c = pin(3)
	c.name, c.status, c.code = "upstream gone", 503, "upstream_unavailable"
	k.send(t, m.srv.URL, c)
}
