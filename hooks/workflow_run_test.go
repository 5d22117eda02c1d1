package hooks

import (
	"context"
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

// The commits and repository of the Gitea capture (testdata/hooks/README.md):
// the pull request's head, and the merge base that Gitea sends as base.sha.
const (
	capturedRepo      = "ci/app"
	capturedHead      = "38b6601a24689be99bbf222d505dc6825ca748a7"
	capturedMergeBase = "fb2d781ec1555d606d77c74ca1d611fc4d8f4287"
	captureSecret     = "capture-secret-0123"
)

// TestGiteaCapturedDeliveriesVerify: the deliveries as a real Gitea sent
// them, byte for byte, verify with the secret they were signed with, and
// name the repository they were captured in (no such project here).
func TestGiteaCapturedDeliveriesVerify(t *testing.T) {
	e := newEnv(t)
	e.rcv.Secrets = Secrets{GiteaSecret: captureSecret}
	for name, want := range map[string]string{
		"gitea-push.http":                         `event \"push\" is not handled; /hooks/gitea acts on workflow_run and pull_request`,
		"gitea-pull_request-opened.http":          `pull request action \"opened\" does not close it`,
		"gitea-workflow_run-requested.http":       "unknown project ci/app",
		"gitea-workflow_run-completed.http":       "unknown project ci/app",
		"gitea-pull_request-closed.http":          "unknown project ci/app",
		"gitea-workflow_run-requested-rerun.http": "unknown project ci/app",
	} {
		header, body := testdata.HookCapture(t, name)
		raw, err := e.rcv.Receive(context.Background(), Gitea, header, body, render)
		if err != nil || !strings.Contains(string(raw), `"action":"ignored"`) || !strings.Contains(string(raw), want) {
			t.Errorf("%s as captured: %s, %v; want ignored with %s", name, raw, err, want)
		}
	}
}

// TestGiteaWorkflowRunLifecycle drives a run through the deliveries a real
// Gitea sent for it (testdata/hooks/README.md), mapped to the test
// repository: requested pins the merge of the head into main's tip (not
// Gitea's base.sha, the merge base), completed finishes it, the re-run's
// requested (no time) does not re-open it, its in_progress does, its
// completed finishes it again, and the closed pull request closes it.
func TestGiteaWorkflowRunLifecycle(t *testing.T) {
	e := newEnv(t)
	want := e.proj.RecomputeMerge(t, e.head, e.proj.Second, "merge", gitops.DefaultIdentity.Name, gitops.DefaultIdentity.Email)
	capture := func(name string, edits ...string) []byte {
		_, body := testdata.HookCapture(t, name, append([]string{capturedRepo, "group/app",
			capturedHead, e.head, capturedMergeBase, e.proj.First}, edits...)...)
		return body
	}
	deliver := func(id string, body []byte, wantAction Action) answer {
		t.Helper()
		a := e.mustDeliver(Gitea, "workflow_run", id, body, wantAction)
		t.Logf("%s: %s %s", id, a.Action, a.Reason)
		return a
	}

	a := deliver("g1", capture("gitea-workflow_run-requested.http"), Pinned)
	if len(a.Pins) != 1 || a.Pins[0].ID != 1 || a.Pins[0].SHA != want || a.Pins[0].IID != 1 {
		t.Fatalf("requested pinned %+v, want run 1 of pull request 1 at the merge %s into main's tip", a.Pins, want)
	}
	if m := e.state(1).Merge; m == nil || string(m.TargetSHA) != e.proj.Second {
		t.Fatalf("merge %+v, want target main's tip %s", m, e.proj.Second)
	}
	deliver("g2", capture("gitea-workflow_run-completed.http"), Finished)
	a = deliver("g3", capture("gitea-workflow_run-requested-rerun.http"), Ignored)
	if !strings.Contains(a.Reason, "late delivery") || e.state(1).State != refs.StateFinished {
		t.Fatalf("the re-run's requested, without a time: %s, state %s", a.Reason, e.state(1).State)
	}
	// The re-run's in_progress, as Gitea sends it once a runner takes the
	// attempt: the capture's requested of it with the status and start a
	// running attempt has (no runner took it here).
	running := capture("gitea-workflow_run-requested-rerun.http",
		`"action": "requested"`, `"action": "in_progress"`,
		`"status": "queued"`, `"status": "in_progress"`,
		`"started_at": "1970-01-01T00:00:00Z"`, `"started_at": "2026-12-03T11:39:23Z"`)
	a = deliver("g4", running, Pinned)
	if len(a.Pins) != 1 || a.Pins[0].SHA != want || e.state(1).State != refs.StatePinned {
		t.Fatalf("the re-run's in_progress: %+v %s", a.Pins, a.Reason)
	}
	deliver("g5", capture("gitea-workflow_run-completed-rerun.http"), Finished)
	a = e.mustDeliver(Gitea, "pull_request", "g6", capture("gitea-pull_request-closed.http"), Closed)
	if len(a.Pins) != 1 || a.Pins[0].ID != 1 || !e.closed(1) {
		t.Fatalf("closed answered %+v", a.Pins)
	}
	if got := e.count("gitea", "workflow_run", "pinned"); got != 2 {
		t.Fatalf("refkeeper_webhook_deliveries_total{host=gitea,event=workflow_run,action=pinned} = %v, want 2", got)
	}
}
