package systest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

const (
	e2eGitLabToken  = "e2e-gitlab-hook-token"
	e2eGitHubSecret = "e2e-github-hook-secret"
	e2eGiteaSecret  = "e2e-gitea-hook-secret"
)

// deliver posts a webhook delivery to the server as the host sends it:
// no bearer token, the host's own headers.
func (s *server) deliver(tb testing.TB, host string, body []byte, headers map[string]string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest("POST", s.Base+"/hooks/"+host, strings.NewReader(string(body)))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		tb.Fatalf("%s hook: %d with non-JSON body %q", host, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func wantAction(tb testing.TB, what string, code int, body map[string]any, action string) {
	tb.Helper()
	if code != 200 || body["action"] != action {
		tb.Fatalf("%s = %d %v, want 200 %s", what, code, body, action)
	}
}

// runnerFetches fetches the pipeline ref as a runner does, with the API
// token, and answers the SHA it checked out.
func runnerFetches(tb testing.TB, fetchURL, refspec, ref string) string {
	tb.Helper()
	work := tb.TempDir()
	if out, err := testdata.RunnerGit(tb, work, "init", "-q", "."); err != nil {
		tb.Fatal(out)
	}
	if out, err := testdata.RunnerGit(tb, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken,
		"fetch", "-q", "--depth=1", fetchURL, refspec); err != nil {
		tb.Fatalf("runner fetch: %v\n%s", err, out)
	}
	out, _ := testdata.RunnerGit(tb, work, "rev-parse", ref)
	return strings.TrimSpace(out)
}

// TestWebhooksEndToEnd replays one real example delivery of each host (see
// testdata/hooks/README.md) against a running server: each drives a pin
// through pin, finish and close, and the ref is checked with the git CLI
// until the worker deleted it.
func TestWebhooksEndToEnd(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gc-interval", "1s",
		"--gitlab-hook-token", e2eGitLabToken, "--github-hook-secret", e2eGitHubSecret, "--gitea-hook-secret", e2eGiteaSecret)
	head, _ := p.git.RefSHA(t, "refs/heads/feature")
	vars := map[string]string{"SHA": p.merge, "HEAD_SHA": head, "BASE_SHA": p.c2}
	refGone := func(ref string) func() bool {
		return func() bool { _, ok := p.git.RefSHA(t, ref); return !ok }
	}

	t.Run("gitlab", func(t *testing.T) {
		success := testdata.HookPayload(t, "gitlab-pipeline-success.json", vars)
		running := testdata.HookEdit(t, testdata.HookEdit(t, success, `"status": "success",`, `"status": "running",`),
			`"finished_at": "2016-08-12 15:26:29 UTC",`, `"finished_at": null,`)
		gitlab := func(event, key string) map[string]string {
			return map[string]string{"X-Gitlab-Event": event, "X-Gitlab-Token": e2eGitLabToken, "Idempotency-Key": key}
		}
		code, body := srv.deliver(t, "gitlab", running, gitlab("Pipeline Hook", "gl-1"))
		wantAction(t, "running", code, body, "pinned")
		pin := body["pins"].([]any)[0].(map[string]any)
		if got := runnerFetches(t, pin["fetch_url"].(string), pin["refspec"].(string), "refs/pipelines/31"); got != p.merge {
			t.Fatalf("runner checked out %s, want %s", got, p.merge)
		}
		code, body = srv.deliver(t, "gitlab", success, gitlab("Pipeline Hook", "gl-2"))
		wantAction(t, "success", code, body, "finished")
		if sha, ok := p.git.RefSHA(t, "refs/pipelines/31"); !ok || sha != p.merge {
			t.Fatalf("a finished pin lost its ref: %q %v", sha, ok)
		}
		merged := testdata.HookEdit(t, testdata.HookPayload(t, "gitlab-merge_request.json", vars), `"action": "open",`, `"action": "merge",`)
		code, body = srv.deliver(t, "gitlab", merged, gitlab("Merge Request Hook", "gl-3"))
		wantAction(t, "merge", code, body, "closed")
		testdata.WaitFor(t, "refs/pipelines/31 deleted", 30*time.Second, refGone("refs/pipelines/31"))
		// GitLab delivers the first one again: answered as before.
		code, body = srv.deliver(t, "gitlab", running, gitlab("Pipeline Hook", "gl-1"))
		wantAction(t, "redelivered running", code, body, "pinned")
		if _, ok := p.git.RefSHA(t, "refs/pipelines/31"); ok {
			t.Fatal("a redelivery re-created the ref")
		}
		// The same running, late, under its own id: the pipeline finished
		// after everything in it, so the deleted ref stays deleted.
		code, body = srv.deliver(t, "gitlab", running, gitlab("Pipeline Hook", "gl-4"))
		wantAction(t, "late running", code, body, "ignored")
		if _, ok := p.git.RefSHA(t, "refs/pipelines/31"); ok || !strings.Contains(body["reason"].(string), "late delivery") {
			t.Fatalf("a late delivery after the deletion: %v, ref re-created %v", body["reason"], ok)
		}
	})

	t.Run("github", func(t *testing.T) {
		github := func(event, id string, body []byte) map[string]string {
			return map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": id,
				"X-Hub-Signature-256": "sha256=" + testdata.HMACHex(e2eGitHubSecret, body)}
		}
		requested := testdata.HookPayload(t, "github-workflow_run-requested.json", vars)
		code, body := srv.deliver(t, "github", requested, github("workflow_run", "gh-1", requested))
		wantAction(t, "requested", code, body, "pinned")
		want := p.git.RecomputeMerge(t, head, p.c2, "merge", "refkeeper", "refkeeper@localhost")
		pin := body["pins"].([]any)[0].(map[string]any)
		if got := runnerFetches(t, pin["fetch_url"].(string), pin["refspec"].(string), "refs/pipelines/289782451"); got != want {
			t.Fatalf("runner checked out %s, want the computed merge %s", got, want)
		}
		completed := testdata.HookPayload(t, "github-workflow_run-completed.json", vars)
		code, body = srv.deliver(t, "github", completed, github("workflow_run", "gh-2", completed))
		wantAction(t, "completed", code, body, "finished")
		closed := testdata.HookPayload(t, "github-pull_request-closed.json", vars)
		code, body = srv.deliver(t, "github", closed, github("pull_request", "gh-3", closed))
		wantAction(t, "closed", code, body, "closed")
		testdata.WaitFor(t, "refs/pipelines/289782451 deleted", 30*time.Second, refGone("refs/pipelines/289782451"))
	})

	t.Run("gitea", func(t *testing.T) {
		// A pin made and finished through the API (a pipeline of another
		// CI system than Gitea Actions): Gitea's closed pull request
		// closes it. ci_runner_test.go drives pins by Gitea's workflow_run.
		code, pin := srv.call(t, "PUT", apiBase+"/pipelines/40/ref", `{"sha":"`+p.c2+`","merge_request_iid":1}`)
		if code != 201 {
			t.Fatalf("pin = %d %v", code, pin)
		}
		if code, _ := srv.call(t, "POST", apiBase+"/pipelines/40/finish", ""); code != 200 {
			t.Fatalf("finish = %d", code)
		}
		closed := testdata.HookPayload(t, "gitea-pull_request-closed.json", vars)
		headers := map[string]string{"X-Gitea-Event": "pull_request", "X-Gitea-Delivery": "gt-1",
			"X-Gitea-Signature": testdata.HMACHex(e2eGiteaSecret, closed)}
		code, body := srv.deliver(t, "gitea", closed, headers)
		wantAction(t, "closed", code, body, "closed")
		testdata.WaitFor(t, "refs/pipelines/40 deleted", 30*time.Second, refGone("refs/pipelines/40"))
		headers["X-Gitea-Signature"] = testdata.HMACHex("not the secret", closed)
		if code, body := srv.deliver(t, "gitea", closed, headers); code != 401 || errCode(body) != "unauthorized" {
			t.Fatalf("bad signature = %d %v", code, body)
		}
	})

	resp, err := http.Get(srv.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`refkeeper_webhook_deliveries_total{action="pinned",event="pipeline",host="gitlab"} 1`,
		`refkeeper_webhook_deliveries_total{action="replayed",event="pipeline",host="gitlab"} 1`,
		`refkeeper_webhook_deliveries_total{action="closed",event="merge_request",host="gitlab"} 1`,
		`refkeeper_webhook_deliveries_total{action="finished",event="workflow_run",host="github"} 1`,
		`refkeeper_webhook_deliveries_total{action="closed",event="pull_request",host="gitea"} 1`,
		`refkeeper_webhook_deliveries_total{action="rejected",event="pull_request",host="gitea"} 1`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(string(raw), "refkeeper_webhook"))
		}
	}
	if strings.Contains(srv.Logs.String(), e2eGitHubSecret) || strings.Contains(srv.Logs.String(), e2eGitLabToken) {
		t.Error("a webhook secret reached the log")
	}
}
