package api_test

import (
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

const hookSecret = "api-hook-secret-0123456789"

// withHooks turns on the webhooks of the given hosts.
func withHooks(hosts ...hooks.Host) func(*api.Config) {
	return func(cfg *api.Config) {
		var s hooks.Secrets
		for _, h := range hosts {
			switch h {
			case hooks.GitLab:
				s.GitLabToken = hookSecret
			case hooks.GitHub:
				s.GitHubSecret = hookSecret
			case hooks.Gitea:
				s.GiteaSecret = hookSecret
			}
		}
		svc := cfg.Pins.(*refs.Service)
		cfg.Hooks = &hooks.Receiver{Domain: svc, Secrets: s,
			Deliveries: &hooks.RedisDeliveries{Client: svc.Store.Client, Keys: svc.Store.Keys, EventTTL: svc.Policy.MaxAge}}
	}
}

// hook posts a delivery as GitHub signs it, with no bearer token.
func (f *fixture) githubHook(t *testing.T, event, id string, body []byte, headers ...string) answer {
	t.Helper()
	h := append([]string{"Authorization: ", "X-GitHub-Event: " + event,
		"X-Hub-Signature-256: sha256=" + testdata.HMACHex(hookSecret, body)}, headers...)
	if id != "" {
		h = append(h, "X-GitHub-Delivery: "+id)
	}
	return f.do(t, "POST", "/hooks/github", string(body), h...)
}

func TestHookRoutesAreOffWithoutSecret(t *testing.T) {
	f := newFixture(t, withHooks(hooks.GitLab))
	for _, host := range []string{"github", "gitea"} {
		if a := f.do(t, "POST", "/hooks/"+host, `{}`, "Authorization: "); a.status != 404 || a.errCode() != "not_found" {
			t.Errorf("/hooks/%s without its secret = %d %s, want 404", host, a.status, a.raw)
		}
	}
	off := newFixture(t)
	if a := off.do(t, "POST", "/hooks/gitlab", `{}`, "Authorization: "); a.status != 404 {
		t.Errorf("/hooks/gitlab with no hooks = %d, want 404", a.status)
	}
	if a := f.do(t, "POST", "/hooks/gitlab", `{}`, "Authorization: ", "X-Gitlab-Token: "+hookSecret, "X-Gitlab-Event: Push Hook"); a.status != 200 || a.body["action"] != "ignored" {
		t.Errorf("/hooks/gitlab with its secret = %d %s, want 200 ignored", a.status, a.raw)
	}
}

func TestHookAnswers(t *testing.T) {
	f := newFixture(t, withHooks(hooks.GitHub, hooks.Gitea))
	head, _ := f.git.RefSHA(t, "refs/heads/feature")
	vars := map[string]string{"HEAD_SHA": head, "BASE_SHA": f.c2}
	requested := testdata.HookPayload(t, "github-workflow_run-requested.json", vars)

	// A signature of another body, a wrong prefix, upper-case hex, none.
	good := testdata.HMACHex(hookSecret, requested)
	for _, sig := range []string{"sha256=" + testdata.HMACHex(hookSecret, []byte("{}")), "sha1=" + good,
		"sha256=" + strings.ToUpper(good), ""} {
		a := f.do(t, "POST", "/hooks/github", string(requested), "Authorization: ", "X-GitHub-Event: workflow_run", "X-Hub-Signature-256: "+sig)
		if a.status != 401 || a.errCode() != "unauthorized" {
			t.Fatalf("signature %q = %d %s, want 401 unauthorized", sig, a.status, a.raw)
		}
	}
	// A bearer token is no signature.
	if a := f.do(t, "POST", "/hooks/github", string(requested), "X-GitHub-Event: workflow_run"); a.status != 401 {
		t.Fatalf("bearer token only = %d, want 401", a.status)
	}
	if refs := f.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("rejected deliveries wrote %v", refs)
	}

	if a := f.githubHook(t, "workflow_run", "", []byte(`{"action":`)); a.status != 400 || a.errCode() != "invalid_request" {
		t.Fatalf("malformed = %d %s, want 400", a.status, a.raw)
	}
	big := []byte(`{"action":"` + strings.Repeat("x", 70<<10) + `"}`)
	if a := f.githubHook(t, "workflow_run", "", big); a.status != 413 || a.errCode() != "payload_too_large" {
		t.Fatalf("over 64 KiB = %d, want 413", a.status)
	}

	a := f.githubHook(t, "workflow_run", "del-1", requested)
	if a.status != 200 || a.body["action"] != "pinned" {
		t.Fatalf("requested = %d %s", a.status, a.raw)
	}
	pins, _ := a.body["pins"].([]any)
	if len(pins) != 1 {
		t.Fatalf("pins = %v", a.body["pins"])
	}
	pin := pins[0].(map[string]any)
	sha, _ := f.git.RefSHA(t, "refs/pipelines/289782451")
	if pin["sha"] != sha || pin["refspec"] != "+refs/pipelines/289782451:refs/pipelines/289782451" ||
		pin["fetch_url"] != f.srv.URL+"/git/group/app.git" || pin["merge_request_iid"] != float64(2) {
		t.Fatalf("pin object = %v (ref at %s)", pin, sha)
	}
	// Hosts keep answers in delivery logs: no live fetch token in them.
	if tok, present := pin["fetch_token"]; !present || tok != nil {
		t.Fatalf("hook answer's pin has fetch_token %v (present %v), want null", tok, present)
	}
	if m, _ := pin["merge"].(map[string]any); m["source_sha"] != head || m["target_sha"] != f.c2 {
		t.Fatalf("merge = %v", pin["merge"])
	}
	if again := f.githubHook(t, "workflow_run", "del-1", requested); again.raw != a.raw {
		t.Fatalf("replay = %s, want %s", again.raw, a.raw)
	}

	// Failed for good: the reason has the error code.
	vars["HEAD_SHA"] = strings.Repeat("cd", 20)
	missing := testdata.HookEdit(t, testdata.HookPayload(t, "github-workflow_run-requested.json", vars), `"id": 289782451`, `"id": 289782452`)
	a = f.githubHook(t, "workflow_run", "", missing)
	if a.status != 200 || a.body["action"] != "failed" || !strings.HasPrefix(a.body["reason"].(string), "commit_not_found: ") {
		t.Fatalf("missing commit = %d %s, want 200 failed with commit_not_found", a.status, a.raw)
	}

	// Redis down: 503 with Retry-After, then the redelivery works.
	closed := testdata.HookPayload(t, "gitea-pull_request-closed.json", vars)
	gitea := []string{"Authorization: ", "X-Gitea-Event: pull_request", "X-Gitea-Delivery: g-1",
		"X-Gitea-Signature: " + testdata.HMACHex(hookSecret, closed)}
	f.redis.Stop(t)
	a = f.do(t, "POST", "/hooks/gitea", string(closed), gitea...)
	if a.status != 503 || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("with Redis down = %d %s, want 503 with Retry-After", a.status, a.raw)
	}
	f.redis.Start(t)
	if a = f.do(t, "POST", "/hooks/gitea", string(closed), gitea...); a.status != 200 || a.body["action"] != "closed" {
		t.Fatalf("redelivery = %d %s, want closed", a.status, a.raw)
	}
}
