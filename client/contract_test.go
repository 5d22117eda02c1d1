package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/client"
)

// The endpoints below (mirrored projects, and the answers they bring:
// upstream_unavailable, upstream_rejected) are tested against
// contractServer, an httptest server that answers exactly the shapes of the
// contract's text (API.md), because the server in this tree does not serve
// them yet. Once it does, these tests belong against the real server, like
// client_test.go.

// contractAnswer is one canned answer of contractServer.
type contractAnswer struct {
	status  int
	header  map[string]string
	body    string
	wantReq string // the request body expected, exactly; empty: none
}

// contractServer answers each "METHOD escaped-path" with its answers in
// turn (the last one repeating) and records every request.
type contractServer struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	answers map[string][]contractAnswer
	seen    []string // "METHOD RequestURI"
}

func newContractServer(t testing.TB, answers map[string][]contractAnswer) *contractServer {
	t.Helper()
	cs := &contractServer{t: t, answers: answers}
	cs.srv = httptest.NewServer(http.HandlerFunc(cs.serve))
	t.Cleanup(cs.srv.Close)
	return cs
}

func (cs *contractServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path, _, _ := strings.Cut(r.RequestURI, "?")
	key := r.Method + " " + path
	cs.mu.Lock()
	cs.seen = append(cs.seen, r.Method+" "+r.RequestURI)
	list := cs.answers[key]
	var a contractAnswer
	if len(list) > 0 {
		a = list[0]
		if len(list) > 1 {
			cs.answers[key] = list[1:]
		}
	}
	cs.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+apiToken {
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"missing or wrong token"}}`)
		return
	}
	if a.status == 0 {
		cs.t.Errorf("contract server: unexpected %s", key)
		w.WriteHeader(404)
		io.WriteString(w, `{"error":{"code":"not_found","message":"no such route"}}`)
		return
	}
	if a.wantReq != "" && string(body) != a.wantReq {
		cs.t.Errorf("%s: body %s, want %s", key, body, a.wantReq)
	}
	if len(body) > 0 && r.Header.Get("Content-Type") != "application/json" {
		cs.t.Errorf("%s: Content-Type %q", key, r.Header.Get("Content-Type"))
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if a.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (cs *contractServer) requests() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]string(nil), cs.seen...)
}

// The project objects of API.md, as it writes them.
const (
	mirrorCloning = `{"project": "group/mirror", "kind": "mirror", "state": "cloning", "upstream": "https://git.example.com/group/app.git", "host": "gitlab", "credential": "name", "fetched_at": null, "last_error": null}`
	mirrorReady   = `{"project": "group/mirror", "kind": "mirror", "state": "ready", "upstream": "https://git.example.com/group/app.git", "host": "gitlab", "credential": "name", "fetched_at": "2026-11-22T10:00:05Z", "last_error": null}`
	localProject  = `{"project": "group/app", "kind": "local", "state": "ready", "upstream": null, "host": null, "credential": null, "fetched_at": null, "last_error": null}`
)

func TestContractProjects(t *testing.T) {
	const mirror = "/api/v1/projects/group%2Fmirror"
	const body = `{"upstream":"https://git.example.com/group/app.git","host":"gitlab","credential":"name"}`
	cs := newContractServer(t, map[string][]contractAnswer{
		"PUT " + mirror: {
			{status: 202, body: mirrorCloning, wantReq: body},
			{status: 200, body: mirrorReady, wantReq: body},
		},
		"PUT /api/v1/projects/group%2Fapp": {{status: 409,
			body: `{"error": {"code": "project_conflict", "message": "group/app is a local project"}}`}},
		"GET " + mirror:                       {{status: 200, body: mirrorReady}},
		"GET /api/v1/projects/group%2Fnone":   {{status: 404, body: `{"error": {"code": "project_not_found", "message": "no such project"}}`}},
		"GET /api/v1/projects":                {{status: 200, body: `{"projects": [` + localProject + `], "next_cursor": "c2"}`}, {status: 200, body: `{"projects": [` + mirrorReady + `], "next_cursor": null}`}},
		"DELETE " + mirror:                    {{status: 204}},
		"DELETE /api/v1/projects/group%2Fapp": {{status: 409, body: `{"error": {"code": "project_conflict", "message": "group/app is a local project"}}`}},
	})
	c := newClient(t, cs.srv.URL, apiToken, client.Options{})
	ctx := t.Context()
	req := client.MirrorRequest{Upstream: "https://git.example.com/group/app.git", Host: client.HostGitLab, Credential: "name"}

	p, accepted, err := c.PutMirror(ctx, "group/mirror", req)
	if err != nil || !accepted || p.State != client.ProjectCloning || p.Kind != client.KindMirror || p.FetchedAt != nil ||
		p.Upstream == nil || *p.Upstream != req.Upstream || p.Host == nil || *p.Host != "gitlab" || p.Credential == nil || *p.Credential != "name" {
		t.Fatalf("first PUT = %+v accepted %v, %v", p, accepted, err)
	}
	p, accepted, err = c.PutMirror(ctx, "group/mirror", req)
	if err != nil || accepted || p.State != client.ProjectReady || p.FetchedAt == nil ||
		!p.FetchedAt.Equal(time.Date(2026, 11, 22, 10, 0, 5, 0, time.UTC)) {
		t.Fatalf("second PUT = %+v accepted %v, %v", p, accepted, err)
	}
	if _, _, err := c.PutMirror(ctx, "group/app", req); !errors.Is(err, client.CodeProjectConflict) {
		t.Fatalf("mirror over a local project: %v", err)
	}
	if p, err := c.GetProject(ctx, "group/mirror"); err != nil || p.Project != "group/mirror" {
		t.Fatalf("get = %+v, %v", p, err)
	}
	if _, err := c.GetProject(ctx, "group/none"); !errors.Is(err, client.CodeProjectNotFound) {
		t.Fatalf("get of nothing: %v", err)
	}
	var names []string
	for p, err := range c.AllProjects(ctx, client.ProjectListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == client.KindLocal && (p.Upstream != nil || p.Host != nil || p.Credential != nil) {
			t.Fatalf("local project with upstream fields: %+v", p)
		}
		names = append(names, p.Project)
	}
	if strings.Join(names, ",") != "group/app,group/mirror" {
		t.Fatalf("projects over pages: %v", names)
	}
	if err := c.DeleteProject(ctx, "group/mirror"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteProject(ctx, "group/app"); !errors.Is(err, client.CodeProjectConflict) {
		t.Fatalf("delete of a local project: %v", err)
	}
	seen := strings.Join(cs.requests(), "\n")
	for _, want := range []string{"GET /api/v1/projects?limit=1", "GET /api/v1/projects?cursor=c2&limit=1"} {
		if !strings.Contains(seen, want) {
			t.Errorf("no request %q in:\n%s", want, seen)
		}
	}
}

// A pin of a computed merge, as API.md writes it.
const mergePin = `{"project": "group/app", "pipeline_id": 7, "ref": "refs/pipelines/7",
  "sha": "1f3e000000000000000000000000000000000000",
  "refspec": "+refs/pipelines/7:refs/pipelines/7",
  "fetch_url": "http://127.0.0.1:8080/git/group/app.git", "fetch_token": "t0k",
  "merge_request_iid": 12, "state": "pinned", "created_at": "2026-11-22T10:00:00Z",
  "finished_at": null, "expires_at": null,
  "merge": {"source_sha": "aaaa000000000000000000000000000000000000", "target_sha": "bbbb000000000000000000000000000000000000", "mode": "merge"}}`

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestContractRetries: upstream_unavailable (503) and rate_limited (429)
// are retried, the pause honouring Retry-After up to MaxDelay;
// upstream_rejected (502) is not retried.
func TestContractRetries(t *testing.T) {
	const ref = "/api/v1/projects/group%2Fmirror/pipelines/1/ref"
	unavailable := contractAnswer{status: 503, header: map[string]string{"Retry-After": "5"},
		body: `{"error": {"code": "upstream_unavailable", "message": "upstream did not answer"}}`}
	limited := contractAnswer{status: 429, header: map[string]string{"Retry-After": "1"},
		body: `{"error": {"code": "rate_limited", "message": "too many requests; slow down and retry"}}`}
	cs := newContractServer(t, map[string][]contractAnswer{
		"PUT " + ref: {unavailable, limited, {status: 201, body: mergePin}},
		"PUT /api/v1/projects/group%2Fmirror/pipelines/2/ref": {{status: 502,
			body: `{"error": {"code": "upstream_rejected", "message": "upstream refused the credentials"}}`}},
	})
	var events []client.RetryEvent
	c := newClient(t, cs.srv.URL, apiToken, client.Options{BaseDelay: time.Millisecond, MaxDelay: 1500 * time.Millisecond,
		OnRetry: func(e client.RetryEvent) { events = append(events, e) }})
	if _, _, err := c.Pin(t.Context(), "group/mirror", 1, client.PinRequest{SHA: strings.Repeat("1", 40)}); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || !errors.Is(events[0].Err, client.CodeUpstreamUnavailable) || !errors.Is(events[1].Err, client.CodeRateLimited) {
		t.Fatalf("retries = %+v", events)
	}
	if events[0].Delay != 1500*time.Millisecond {
		t.Errorf("Retry-After 5 with MaxDelay 1.5s: paused %v, want the cap", events[0].Delay)
	}
	if events[1].Delay < time.Second || events[1].Delay > 1500*time.Millisecond {
		t.Errorf("Retry-After 1: paused %v, want 1s to 1.5s", events[1].Delay)
	}
	events = nil
	if _, _, err := c.Pin(t.Context(), "group/mirror", 2, client.PinRequest{SHA: strings.Repeat("1", 40)}); !errors.Is(err, client.CodeUpstreamRejected) || len(events) != 0 {
		t.Fatalf("upstream_rejected: %v, retries %+v", err, events)
	}
}
