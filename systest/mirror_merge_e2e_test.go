package systest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMirrorComputedMergeEndToEnd runs the binary's serve against a real
// upstream: on a github mirror, a workflow_run delivery for a pull request
// pushed after the clone and a pin by computed merge with the source
// omitted each pin the commit the git CLI makes from what the upstream has
// now, a runner fetches it, and with the upstream stopped a pin is 503 and
// writes nothing.
func TestMirrorComputedMergeEndToEnd(t *testing.T) {
	root := t.TempDir()
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := u.CredentialsFile(t, "gh")
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams, "--github-hook-secret", e2eGitHubSecret)
	const api = "/api/v1/projects/acme%2Fapp"
	srv.registerMirror(t, api, fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "gh"}`, u.URL()))

	// Pushed after the clone: pull request 2, and a new tip of main.
	u.Repo.Git(t, "branch", "pr2", u.Second)
	head2 := u.Repo.Commit(t, "pr2", map[string]string{"pr2.txt": "two\n"}, "pull request 2")
	u.Repo.Git(t, "update-ref", "refs/pull/2/head", head2)
	main := u.Repo.Commit(t, "main", map[string]string{"app.txt": "v3\n"}, "third")

	delivery := testdata.HookPayload(t, "github-workflow_run-requested.json", map[string]string{"HEAD_SHA": head2, "BASE_SHA": main})
	delivery = bytes.ReplaceAll(delivery, []byte(`"full_name": "group/app"`), []byte(`"full_name": "acme/app"`))
	code, out := srv.deliver(t, "github", delivery, map[string]string{"X-GitHub-Event": "workflow_run",
		"X-GitHub-Delivery": "e2e-mirror-1", "X-Hub-Signature-256": "sha256=" + testdata.HMACHex(e2eGitHubSecret, delivery)})
	wantAction(t, "workflow_run requested", code, out, "pinned")
	want := u.Repo.RecomputeMerge(t, head2, main, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	pin := out["pins"].([]any)[0].(map[string]any)
	if pin["sha"] != want {
		t.Fatalf("hook pinned %v, git merge-tree + commit-tree give %s", pin["sha"], want)
	}
	if got := runnerFetches(t, pin["fetch_url"].(string), pin["refspec"].(string), "refs/pipelines/289782451"); got != want {
		t.Errorf("runner got %s, want %s", got, want)
	}

	code, pin = srv.call(t, "PUT", api+"/pipelines/8/ref", `{"merge": {"target": "main"}, "merge_request_iid": 1}`)
	want = u.Repo.RecomputeMerge(t, u.Head, main, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	if code != 201 || pin["sha"] != want {
		t.Fatalf("pin with source omitted = %d %v, want 201 at %s", code, pin, want)
	}

	u.Stop()
	code, out = srv.call(t, "PUT", api+"/pipelines/9/ref", `{"merge": {"target": "main"}, "merge_request_iid": 1}`)
	if e, _ := out["error"].(map[string]any); code != 503 || e["code"] != "upstream_unavailable" {
		t.Errorf("pin with the upstream stopped = %d %v, want 503 upstream_unavailable", code, out)
	}
	if code, _ := srv.call(t, "GET", api+"/pipelines/9/ref", ""); code != 404 {
		t.Errorf("the failed pin left a record: %d", code)
	}
}
