package systest

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestIDTokensOnTwoReplicas: two `serve --role all` processes share Redis,
// the repos root and one access file that trusts two real issuers over
// HTTP. The GitLab issuer is down when they start: they start, and a job's
// token is 503 until it is back. Then a GitLab job's ID token pins its
// pipeline on one replica, reads and fetches it with git over /git/ on the
// other, is refused everything else on both, and finishes; `refkeeper
// checkout` looks its pin up with REFKEEPER_ID_TOKEN, and a GitHub Actions
// job's with a token it requests from the Actions runtime.
func TestIDTokensOnTwoReplicas(t *testing.T) {
	gl, gh := testdata.StartIssuer(t), testdata.StartIssuer(t)
	gl.SetDown(true)
	f := startAccessReplicas(t, fmt.Sprintf(`{"identities": [
		{"issuer": %q, "audience": "refkeeper", "kind": "gitlab", "projects": ["group/*"]},
		{"issuer": %q, "audience": "refkeeper", "kind": "github", "projects": ["group/*"]}
	]}`, gl.URL, gh.URL))
	p, other, otherSHA, a, b := f.p, f.other, f.otherSHA, f.a, f.b

	job := gl.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))
	pin := `{"sha":"` + p.c1 + `","merge_request_iid":12}`
	code, h, raw := a.as(t, job, "PUT", apiBase+"/pipelines/7/ref", pin)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(raw, "unavailable") {
		t.Fatalf("pin with the issuer down = %d %s (Retry-After %q), want 503 unavailable", code, raw, h.Get("Retry-After"))
	}
	if p.hasRef(t, 7) {
		t.Fatal("a pin refused for its issuer made the ref")
	}
	gl.SetDown(false)
	testdata.WaitFor(t, "the issuer to be asked again", 30*time.Second, func() bool {
		code, _, _ := a.as(t, job, "PUT", apiBase+"/pipelines/7/ref", pin)
		return code == 201
	})
	if code, _, raw := b.as(t, job, "GET", apiBase+"/pipelines/7/ref", ""); code != 200 || !strings.Contains(raw, p.c1) {
		t.Fatalf("get on the other replica = %d %s", code, raw)
	}

	// git over /git/ on both replicas, the ID token as bearer and as
	// basic password: the pinned ref alone.
	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	if out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+job,
		"fetch", "--depth=1", b.Base+"/git/group/app.git", "+refs/pipelines/7:refs/pipelines/7"); err != nil {
		t.Fatalf("fetch with the ID token on replica b: %v\n%s", err, out)
	}
	if out, err := testdata.RunnerGit(t, work, "checkout", "-q", "--detach", "refs/pipelines/7"); err != nil || testdata.HeadOf(t, work) != p.c1 {
		t.Fatalf("checkout of the fetched pin: %v\n%s", err, out)
	}
	basic := strings.Replace(a.Base, "http://", "http://job:"+job+"@", 1) + "/git/group/app.git"
	out, err := testdata.RunnerGit(t, work, "ls-remote", basic)
	if err != nil || strings.TrimSpace(out) != p.c1+"\trefs/pipelines/7" {
		t.Fatalf("ls-remote with the ID token on replica a: %v %q, want refs/pipelines/7 alone", err, out)
	}
	if out, err := testdata.RunnerGit(t, work, "fetch", "--depth=1", basic, "+refs/heads/main:refs/x"); err == nil {
		t.Fatalf("the ID token fetched a branch:\n%s", out)
	}

	// Everything else is 403 on both replicas and changes nothing.
	if code, body := a.call(t, "PUT", "/api/v1/projects/other%2Flib/pipelines/1/ref", `{"sha":"`+otherSHA+`"}`); code != 201 {
		t.Fatalf("admin pin of other/lib = %d %v", code, body)
	}
	for _, s := range []*server{a, b} {
		for _, req := range [][3]string{
			{"PUT", apiBase + "/pipelines/8/ref", pin},
			{"GET", "/api/v1/projects/other%2Flib/pipelines/1/ref", ""},
			{"PUT", "/api/v1/projects/other%2Flib/pipelines/7/ref", `{"sha":"` + otherSHA + `"}`},
			{"DELETE", apiBase + "/pipelines/7/ref", ""},
			{"GET", apiBase + "/pipelines", ""},
			{"GET", "/api/v1/projects", ""},
			{"POST", "/api/v1/gc", ""},
		} {
			if code, _, raw := s.as(t, job, req[0], req[1], req[2]); code != 403 || !strings.Contains(raw, "forbidden") {
				t.Errorf("%s %s with the job's ID token = %d %s, want 403 forbidden", req[0], req[1], code, raw)
			}
		}
		if out, err := testdata.RunnerGit(t, work, "ls-remote", strings.Replace(s.Base, "http://", "http://job:"+job+"@", 1)+"/git/other/lib.git"); err == nil || !strings.Contains(out, "403") {
			t.Errorf("ls-remote of other/lib with the job's ID token: %v\n%s", err, out)
		}
	}
	if p.hasRef(t, 8) || len(other.Refs(t, "refs/pipelines/")) != 1 || !p.hasRef(t, 7) {
		t.Fatalf("refused requests changed refs: group/app 8 %v, 7 %v, other/lib %v", p.hasRef(t, 8), p.hasRef(t, 7), other.Refs(t, "refs/pipelines/"))
	}

	// refkeeper checkout looks the pin up with the job's ID token.
	dir := filepath.Join(t.TempDir(), "app")
	out, err = runShell(t, t.TempDir(), `refkeeper checkout "$DIR" --project group/app --pipeline 7 --expect-sha "$SHA"`,
		map[string]string{"DIR": dir, "SHA": p.c1, "REFKEEPER_URL": b.Base, "REFKEEPER_ID_TOKEN": job})
	if err != nil || testdata.HeadOf(t, dir) != p.c1 {
		t.Fatalf("checkout with REFKEEPER_ID_TOKEN: %v\n%s", err, out)
	}
	if code, _, raw := b.as(t, job, "POST", apiBase+"/pipelines/7/finish", `{"status":"success"}`); code != 200 || !strings.Contains(raw, `"finished"`) {
		t.Fatalf("finish with the job's ID token on replica b = %d %s", code, raw)
	}

	// A GitHub Actions job: checkout requests its token from the runtime.
	if code, body := a.call(t, "PUT", apiBase+"/pipelines/9/ref", `{"sha":"`+p.c2+`"}`); code != 201 {
		t.Fatalf("admin pin of run 9 = %d %v", code, body)
	}
	gh.SetActionsJob("group/app", 9)
	actions := map[string]string{"REFKEEPER_URL": a.Base, "ACTIONS_ID_TOKEN_REQUEST_URL": gh.ActionsRequestURL(),
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": testdata.IssuerActionsRequestToken}
	dir = filepath.Join(t.TempDir(), "app")
	out, err = runShell(t, t.TempDir(), `refkeeper checkout "`+dir+`" --project group/app --pipeline 9`, actions)
	if err != nil || testdata.HeadOf(t, dir) != p.c2 {
		t.Fatalf("checkout with an Actions ID token: %v\n%s", err, out)
	}
	// Its token is for run 9: pipeline 7's pin is not its to read.
	out, err = runShell(t, t.TempDir(), `refkeeper checkout "`+filepath.Join(t.TempDir(), "x")+`" --project group/app --pipeline 7`, actions)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "403") {
		t.Fatalf("checkout of another run with an Actions ID token: %v\n%s", err, out)
	}

	for _, s := range []*server{a, b} {
		logs := s.Logs.String()
		if strings.Contains(logs, job) || strings.Contains(logs, job[strings.LastIndexByte(job, '.')+1:]) {
			t.Errorf("a server log shows the job's ID token:\n%s", logs)
		}
	}
	if !strings.Contains(a.Logs.String(), "ID token issuer unreachable") {
		t.Errorf("replica a did not log the unreachable issuer:\n%s", a.Logs.String())
	}
}
