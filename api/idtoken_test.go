package api_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/idtoken"
	"github.com/refkeeper/refkeeper/testdata"
)

// idFixture is the API of accessFixture (group/app, other/lib) whose
// access file trusts two real issuers over HTTP: gitlab, kind gitlab, and
// github, kind github, each for group/*.
type idFixture struct {
	*accessFixture
	gitlab, github *testdata.Issuer
	verifier       *idtoken.Verifier
}

func newIDFixture(t *testing.T) *idFixture {
	t.Helper()
	gl, gh := testdata.StartIssuer(t), testdata.StartIssuer(t)
	path := filepath.Join(t.TempDir(), "access.json")
	body, err := json.Marshal(map[string]any{
		"tokens": baseTokens(),
		"identities": []map[string]any{
			{"issuer": gl.URL, "audience": testdata.IssuerAudience, "kind": "gitlab", "projects": []string{"group/*"}},
			{"issuer": gh.URL, "audience": testdata.IssuerAudience, "kind": "github", "projects": []string{"group/*"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	file, v, logs := loadAccess(t, path, body)
	v.RetryDiscovery = 100 * time.Millisecond
	m := newMirrorFixture(t, 30*time.Second, func(cfg *api.Config) { cfg.Access, cfg.IDTokens = file, v })
	other := testdata.NewBareRepo(t, m.root, "other/lib")
	sha := other.Commit(t, "main", map[string]string{"lib.txt": "lib\n"}, "lib")
	return &idFixture{
		accessFixture: &accessFixture{mirrorFixture: m, path: path, other: other, otherSHA: sha, logs: logs},
		gitlab:        gl, github: gh, verifier: v,
	}
}

// TestIDTokens: a GitLab-shaped and a GitHub-shaped job token pin, get
// and finish their own pipeline's pin, and nothing else: another
// pipeline, another project, the listings, deletion, closing, projects
// and GC are 403 and change nothing.
func TestIDTokens(t *testing.T) {
	f := newIDFixture(t)
	if a := f.do(t, "PUT", otherPath+"/pipelines/7/ref", `{"sha":"`+f.otherSHA+`"}`); a.status != 201 {
		t.Fatalf("admin pin of other/lib = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "PUT", p+"/pipelines/5/ref", `{"sha":"`+f.c2+`","merge_request_iid":12}`); a.status != 201 {
		t.Fatalf("admin pin of pipeline 5 = %d %s", a.status, a.raw)
	}
	jobs := []struct {
		name string
		tok  string
		id   int
	}{
		{"GitLab-shaped", f.gitlab.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), 7},
		{"GitHub-shaped", f.github.Token(t, testdata.GitHubClaims("group/app", 9, testdata.IssuerAudience)), 9},
	}
	for _, job := range jobs {
		own := fmt.Sprintf("%s/pipelines/%d", p, job.id)
		pinBody := `{"sha":"` + f.c1 + `","merge_request_iid":12}`
		for _, s := range []struct {
			what, method, path, body string
			status                   int
		}{
			{"pins its pipeline", "PUT", own + "/ref", pinBody, 201},
			{"pins it again", "PUT", own + "/ref", pinBody, 200},
			{"gets its pin", "GET", own + "/ref", "", 200},
			{"finishes its pin", "POST", own + "/finish", `{"status":"success"}`, 200},
			{"re-opens its pin (a retried job)", "PUT", own + "/ref", pinBody, 200},
		} {
			a := f.do(t, s.method, s.path, s.body, asToken(job.tok))
			if a.status != s.status {
				t.Fatalf("%s token %s: %d %s, want %d", job.name, s.what, a.status, a.raw, s.status)
			}
		}

		gitBefore, otherBefore := f.git.Refs(t, "refs/pipelines/"), f.other.Refs(t, "refs/pipelines/")
		otherPipeline := fmt.Sprintf("%s/pipelines/%d", p, job.id+100)
		for _, s := range []struct{ what, method, path, body string }{
			{"pins another pipeline", "PUT", otherPipeline + "/ref", pinBody},
			{"re-pins pipeline 5", "PUT", p + "/pipelines/5/ref", `{"sha":"` + f.c2 + `"}`},
			{"gets pipeline 5", "GET", p + "/pipelines/5/ref", ""},
			{"finishes pipeline 5", "POST", p + "/pipelines/5/finish", ""},
			{"deletes pipeline 5", "DELETE", p + "/pipelines/5/ref", ""},
			{"deletes its own pin", "DELETE", own + "/ref", ""},
			{"its pipeline id in another project", "PUT", fmt.Sprintf("%s/pipelines/%d/ref", otherPath, job.id), `{"sha":"` + f.otherSHA + `"}`},
			{"gets another project's pin", "GET", otherPath + "/pipelines/7/ref", ""},
			{"finishes another project's pin", "POST", otherPath + "/pipelines/7/finish", ""},
			{"lists its project's pins", "GET", p + "/pipelines", ""},
			{"lists another project's pins", "GET", otherPath + "/pipelines", ""},
			{"closes a merge request", "POST", p + "/merge_requests/12/close", ""},
			{"gets its project", "GET", p, ""},
			{"lists projects", "GET", "/api/v1/projects", ""},
			{"registers a mirror", "PUT", mirrorPath, `{"upstream":"` + f.upstream.URL() + `"}`},
			{"deletes a project", "DELETE", otherPath, ""},
			{"runs GC", "POST", "/api/v1/gc", ""},
		} {
			a := f.do(t, s.method, s.path, s.body, asToken(job.tok))
			if a.status != 403 || a.errCode() != "forbidden" {
				t.Errorf("%s token %s: %d %s, want 403 forbidden", job.name, s.what, a.status, a.raw)
			}
		}
		if got := f.git.Refs(t, "refs/pipelines/"); !equalRefs(got, gitBefore) {
			t.Errorf("%s token's refused requests changed group/app's refs: %v, was %v", job.name, got, gitBefore)
		}
		if got := f.other.Refs(t, "refs/pipelines/"); !equalRefs(got, otherBefore) {
			t.Errorf("%s token's refused requests changed other/lib's refs: %v, was %v", job.name, got, otherBefore)
		}
		if a := f.do(t, "GET", p+"/pipelines/5/ref", ""); a.body["state"] != "pinned" || a.body["sha"] != f.c2 {
			t.Errorf("pipeline 5 after %s token's refusals: %s", job.name, a.raw)
		}
	}
	if a := f.do(t, "GET", "/api/v1/projects", ""); a.status != 200 || strings.Contains(a.raw, "mirrors/gh") {
		t.Errorf("projects after the refusals: %d %s", a.status, a.raw)
	}

	// Tokens that do not hold stay 401, all with one answer that tells
	// nothing (which issuers are trusted, which audiences configured):
	// the reason is the log's.
	now := time.Now()
	expired := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	expired["exp"], expired["iat"], expired["nbf"] = now.Add(-5*time.Minute), now.Add(-time.Hour), now.Add(-time.Hour)
	early := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	early["nbf"] = now.Add(5 * time.Minute)
	wrongIss := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	wrongIss["iss"] = f.github.URL // the other trusted issuer, signed by this one
	forever := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	forever["iat"], forever["exp"] = now, now.Add(365*24*time.Hour)
	for _, s := range []struct{ what, tok, logged string }{
		{"expired", f.gitlab.Token(t, expired), "expired"},
		{"not yet valid", f.gitlab.Token(t, early), "not valid before"},
		{"valid for a year", f.gitlab.Token(t, forever), "longer than"},
		{"wrong audience", f.gitlab.Token(t, testdata.GitLabClaims("group/app", 7, "someone-else")), "aud"},
		{"another key", f.gitlab.TokenWithKey(t, f.gitlab.NewKey(t), testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), "signature"},
		{"another trusted issuer's iss", f.gitlab.Token(t, wrongIss), "signature"},
		{"a project outside the entry's", f.gitlab.Token(t, testdata.GitLabClaims("stranger/repo", 7, testdata.IssuerAudience)), "outside"},
		{"an untrusted issuer", testdata.StartIssuer(t).Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), ""},
		{"GitLab-shaped from the github issuer", f.github.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), "repository and run_id"},
		{"alg none", f.gitlab.NoneToken(testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), ""},
		{"HS256 with the public key", f.gitlab.HMACToken(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)), ""},
	} {
		logged := len(f.logs.String())
		a := f.do(t, "GET", p+"/pipelines/7/ref", "", asToken(s.tok))
		if a.status != 401 || a.errCode() != "unauthorized" || a.errMessage() != "missing or wrong token" || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s, want 401 saying only %q", s.what, a.status, a.raw, "missing or wrong token")
		}
		for _, u := range []string{f.gitlab.URL, f.github.URL, testdata.IssuerAudience} {
			if strings.Contains(a.raw, u) {
				t.Errorf("%s: the 401 names %s: %s", s.what, u, a.raw)
			}
		}
		if s.logged != "" && !strings.Contains(f.logs.String()[logged:], s.logged) {
			t.Errorf("%s: the log does not say why (%q):\n%s", s.what, s.logged, f.logs.String()[logged:])
		}
		if strings.Contains(f.logs.String(), s.tok) {
			t.Errorf("a log line shows the %s token", s.what)
		}
	}
	for _, job := range jobs {
		if strings.Contains(f.logs.String(), job.tok) {
			t.Errorf("a log line shows the %s token", job.name)
		}
	}
}

// TestIDTokenVerifiedOnce: with the token rate limit on, one request
// verifies its ID token once (the limiter's verdict is kept for
// requireToken and the git mount); a refused token, however valid its
// signature, gets no bucket of its own.
func TestIDTokenVerifiedOnce(t *testing.T) {
	gl := testdata.StartIssuer(t)
	path := filepath.Join(t.TempDir(), "access.json")
	body, err := json.Marshal(map[string]any{"tokens": baseTokens(), "identities": []map[string]any{
		{"issuer": gl.URL, "audience": testdata.IssuerAudience, "kind": "gitlab", "projects": []string{"group/*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	file, v, logs := loadAccess(t, path, body)
	f := newFixture(t, func(cfg *api.Config) {
		cfg.Access, cfg.IDTokens = file, v
		cfg.TokenLimit = api.RateLimit{Rate: 0.001, Burst: 1}
	})
	for _, s := range []struct{ what, tok string }{
		{"wrong audience", gl.Token(t, testdata.GitLabClaims("group/app", 7, "nope"))},
		{"project outside the entry", gl.Token(t, testdata.GitLabClaims("stranger/repo", 7, testdata.IssuerAudience))},
	} {
		for i := range 3 {
			before := strings.Count(logs.String(), "ID token refused")
			a := f.do(t, "GET", p+"/pipelines/7/ref", "", asToken(s.tok))
			if n := strings.Count(logs.String(), "ID token refused") - before; a.status != 401 || n != 1 {
				t.Errorf("%s, request %d: %d %s, verified %d times; want 401, once (no bucket of its own)", s.what, i+1, a.status, a.raw, n)
			}
		}
	}
	// An accepted token has its bucket.
	tok := gl.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))
	if a := f.do(t, "GET", p+"/pipelines/7/ref", "", asToken(tok)); a.status != 404 {
		t.Errorf("the job's own pin, none yet: %d %s; want 404", a.status, a.raw)
	}
	if a := f.do(t, "GET", p+"/pipelines/7/ref", "", asToken(tok)); a.status != 429 {
		t.Errorf("the job's second request past its bucket: %d %s; want 429", a.status, a.raw)
	}
}

// TestIDTokenIssuerDown: an issuer that does not answer gives 503 with
// Retry-After (not 401), and tokens work once it is back.
func TestIDTokenIssuerDown(t *testing.T) {
	f := newIDFixture(t)
	f.gitlab.SetDown(true)
	tok := f.gitlab.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))
	a := f.do(t, "PUT", p+"/pipelines/7/ref", `{"sha":"`+f.c1+`"}`, asToken(tok))
	if a.status != 503 || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("pin with the issuer down = %d %s (Retry-After %q), want 503 unavailable", a.status, a.raw, a.header.Get("Retry-After"))
	}
	if strings.Contains(a.raw, f.gitlab.URL) || strings.Contains(a.raw, strings.TrimPrefix(f.gitlab.URL, "http://")) {
		t.Errorf("the 503 names the issuer: %s", a.raw)
	}
	if refs := f.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("a pin refused for the issuer made refs %v", refs)
	}
	f.gitlab.SetDown(false)
	testdata.WaitFor(t, "the issuer to be asked again", 10*time.Second, func() bool {
		return f.do(t, "PUT", p+"/pipelines/7/ref", `{"sha":"`+f.c1+`"}`, asToken(tok)).status == 201
	})
}

// TestIDTokenFetch: a job's ID token fetches its own pipeline's pin over
// /git/ (bearer or basic password), as its fetch token would: that ref
// alone, never another project, and a deleted pin is 404.
func TestIDTokenFetch(t *testing.T) {
	f := newIDFixture(t)
	for _, path := range []string{p + "/pipelines/7/ref", p + "/pipelines/8/ref"} {
		if a := f.do(t, "PUT", path, `{"sha":"`+f.c1+`"}`); a.status != 201 {
			t.Fatalf("admin pin = %d %s", a.status, a.raw)
		}
	}
	if a := f.do(t, "PUT", otherPath+"/pipelines/7/ref", `{"sha":"`+f.otherSHA+`"}`); a.status != 201 {
		t.Fatalf("admin pin of other/lib = %d %s", a.status, a.raw)
	}
	for _, job := range []struct{ name, tok string }{
		{"GitLab-shaped", f.gitlab.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))},
		{"GitHub-shaped", f.github.Token(t, testdata.GitHubClaims("group/app", 7, testdata.IssuerAudience))},
	} {
		host := strings.TrimPrefix(f.srv.URL, "http://")
		basic := "http://job:" + job.tok + "@" + host + "/git/group/app.git"
		bearer := []string{"-c", "http.extraHeader=Authorization: Bearer " + job.tok}
		for _, proto := range []string{"0", "2"} {
			work := t.TempDir()
			if out, err := gitCLI(t, work, "init", "-q", "."); err != nil {
				t.Fatal(out)
			}
			out, err := gitCLI(t, work, "-c", "protocol.version="+proto, "ls-remote", basic)
			if err != nil || strings.TrimSpace(out) != f.c1+"\trefs/pipelines/7" {
				t.Fatalf("%s ls-remote (protocol %s): %v %q, want refs/pipelines/7 alone", job.name, proto, err, out)
			}
			args := append(append([]string{}, bearer...), "-c", "protocol.version="+proto, "fetch", "--depth=1",
				f.srv.URL+"/git/group/app.git", "+refs/pipelines/7:refs/pipelines/7")
			if out, err := gitCLI(t, work, args...); err != nil {
				t.Fatalf("%s fetch with the bearer header (protocol %s): %v\n%s", job.name, proto, err, out)
			}
			if out, _ := gitCLI(t, work, "rev-parse", "refs/pipelines/7"); strings.TrimSpace(out) != f.c1 {
				t.Fatalf("%s fetch brought %q", job.name, out)
			}
			for _, want := range []string{"+refs/pipelines/8:refs/x", "+refs/heads/main:refs/x", f.c2} {
				if out, err := gitCLI(t, work, "-c", "protocol.version="+proto, "fetch", "--depth=1", basic, want); err == nil {
					t.Fatalf("%s token fetched %s (protocol %s):\n%s", job.name, want, proto, out)
				}
			}
		}
		// Another project: 403, raw.
		for _, path := range []string{"/git/other/lib.git/info/refs?service=git-upload-pack", "/git/group/nope.git/info/refs?service=git-upload-pack"} {
			req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
			req.SetBasicAuth("job", job.tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Errorf("%s token on %s = %d, want 403", job.name, path, resp.StatusCode)
			}
		}
	}
	// Its pin deleted: nothing to fetch, 404.
	tok := f.gitlab.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))
	if a := f.do(t, "DELETE", p+"/pipelines/7/ref", ""); a.status != 204 {
		t.Fatalf("delete = %d %s", a.status, a.raw)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("ID token of a deleted pin on /git/ = %d, want 404", resp.StatusCode)
	}
	// Not an ID token of a trusted issuer: 401 with git's challenge.
	req.Header.Set("Authorization", "Bearer "+f.gitlab.NoneToken(testdata.GitLabClaims("group/app", 8, testdata.IssuerAudience)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("forged ID token on /git/ = %d, want 401 with a challenge", resp.StatusCode)
	}
}

// loadAccess writes body as the access file at path and loads it, with a
// verifier of its identities; both log into the buffer answered.
func loadAccess(t *testing.T, path string, body []byte) (*access.File, *idtoken.Verifier, *testdata.LockedBuffer) {
	t.Helper()
	writeRaw(t, path, body)
	logs := &testdata.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	file := &access.File{Path: path, Logger: logger}
	if err := file.Load(); err != nil {
		t.Fatal(err)
	}
	return file, &idtoken.Verifier{Identities: file.Identities, Logger: logger}, logs
}
