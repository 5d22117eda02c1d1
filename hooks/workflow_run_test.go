package hooks

import (
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// A workflow run's merge target is the tip of pull_requests[0].base.ref when
// the delivery arrives, not the payload's base.sha (on GitHub the base as of
// the pull request's last update, on Gitea the merge base), and the pin
// says which commit that was; a later delivery of the same run keeps it
// after the branch moved on.
func TestGitHubWorkflowRunTargetIsBaseTip(t *testing.T) {
	e := newEnv(t)
	// base.sha is main's first commit, stale: main has moved on to Second.
	e.vars["BASE_SHA"] = e.proj.First
	want := e.proj.RecomputeMerge(t, e.head, e.proj.Second, "merge", gitops.DefaultIdentity.Name, gitops.DefaultIdentity.Email)

	a := e.mustDeliver(GitHub, "workflow_run", "t1", e.payload("github-workflow_run-requested.json"), Pinned)
	if len(a.Pins) != 1 || a.Pins[0].SHA != want {
		t.Fatalf("pinned %+v (%s), want the merge %s of %s into main's tip %s", a.Pins, a.Reason, want, e.head, e.proj.Second)
	}
	pin := e.state(289782451)
	if pin.Merge == nil || string(pin.Merge.TargetSHA) != e.proj.Second || string(pin.Merge.SourceSHA) != e.head {
		t.Fatalf("pin's merge = %+v, want target %s", pin.Merge, e.proj.Second)
	}
	if !strings.Contains(a.Reason, "into "+e.proj.Second+" (the tip of refs/heads/main)") {
		t.Fatalf("reason %q does not say which commit the target was", a.Reason)
	}
	t.Logf("requested answered: %s", a.Reason)

	// main moves on; the same run's requested again (a redelivery under a
	// new id, a re-run) keeps the merge it was pinned with.
	e.proj.Commit(t, "main", map[string]string{"app.txt": "v3\n"}, "third")
	a = e.mustDeliver(GitHub, "workflow_run", "t2", e.payload("github-workflow_run-requested.json"), Pinned)
	if len(a.Pins) != 1 || a.Pins[0].SHA != want || !strings.Contains(a.Reason, "as this run was pinned before") {
		t.Fatalf("requested again after main moved: %+v %s", a.Pins, a.Reason)
	}
	e.mustDeliver(GitHub, "workflow_run", "t3", e.payload("github-workflow_run-completed.json"), Finished)
	rerun := testdata.HookEdit(t, e.payload("github-workflow_run-requested.json"),
		`"updated_at": "2020-10-05T16:33:24Z"`, `"updated_at": "2020-10-05T16:40:00Z"`)
	a = e.mustDeliver(GitHub, "workflow_run", "t4", rerun, Pinned)
	if len(a.Pins) != 1 || a.Pins[0].SHA != want || e.state(289782451).State != refs.StatePinned {
		t.Fatalf("re-run after main moved: %+v %s", a.Pins, a.Reason)
	}

	// A run of another pull request whose base branch does not exist.
	other := testdata.HookEdit(t, testdata.HookEdit(t, e.payload("github-workflow_run-requested.json"),
		`"id": 289782451`, `"id": 289782452`), `"ref": "main"`, `"ref": "release"`)
	a = e.mustDeliver(GitHub, "workflow_run", "t5", other, Failed)
	if !strings.Contains(a.Error, "refs/heads/release") {
		t.Fatalf("missing base branch: %+v", a)
	}
}

// Ignore reasons name the event once, and what the route acts on.
func TestUnhandledEventReasons(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		host        Host
		event, typ  string
		want, unwan string
	}{
		{Gitea, "push", "push", `event \"push\" is not handled; /hooks/gitea acts on workflow_run and pull_request`, "push push"},
		{Gitea, "pull_request", "pull_request_label", `event \"pull_request\" of type \"pull_request_label\" is not handled`, ""},
		{GitHub, "push", "", `event \"push\" is not handled; /hooks/github acts on workflow_run and pull_request`, ""},
		{GitLab, "Push Hook", "", `event \"Push Hook\" is not handled; /hooks/gitlab acts on Pipeline Hook and Merge Request Hook`, ""},
	} {
		var extra []string
		if c.typ != "" {
			extra = []string{"X-Gitea-Event-Type", c.typ}
		}
		raw, a, err := e.deliver(c.host, c.event, "", []byte(`{"repository":{"full_name":"group/app"}}`), extra...)
		if err != nil || a.Action != "ignored" || !strings.Contains(string(raw), c.want) || c.unwan != "" && strings.Contains(string(raw), c.unwan) {
			t.Errorf("%s %s/%s: %s %v; want %s", c.host, c.event, c.typ, raw, err, c.want)
		}
	}
}
