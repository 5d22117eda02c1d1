package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

const (
	gitlabToken  = "gitlab-hook-token-0123"
	githubSecret = "github-hook-secret-0123"
	giteaSecret  = "gitea-hook-secret-0123"
)

type env struct {
	t     *testing.T
	svc   *refs.Service
	rcv   *Receiver
	proj  *testdata.MergeRequestProject
	redis *testdata.Redis
	// vars fill the payloads' placeholders: SHA is the merge request's
	// merge commit, HEAD_SHA and BASE_SHA the feature and main branches.
	vars map[string]string
	head string
	reg  *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fx := refstest.New(t)
	svc, proj, r := fx.Service, fx.Git, fx.Redis
	head, _ := proj.RefSHA(t, "refs/heads/feature")
	reg := prometheus.NewRegistry()
	rcv := &Receiver{
		Domain:     svc,
		Deliveries: &RedisDeliveries{Client: svc.Store.Client, EventTTL: svc.Policy.MaxAge},
		Secrets:    Secrets{GitLabToken: gitlabToken, GitHubSecret: githubSecret, GiteaSecret: giteaSecret},
		Metrics:    NewMetrics(reg),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return &env{t: t, svc: svc, rcv: rcv, proj: proj, redis: r, head: head, reg: reg,
		vars: map[string]string{"SHA": proj.Merge, "HEAD_SHA": head, "BASE_SHA": proj.Second}}
}

func (e *env) payload(name string) []byte { return testdata.HookPayload(e.t, name, e.vars) }

// answer is what the tests' renderer writes: enough to check each field.
type answer struct {
	Action string        `json:"action"`
	Reason string        `json:"reason"`
	Error  string        `json:"error"`
	Pins   []answeredPin `json:"pins"`
}

type answeredPin struct {
	ID    int64  `json:"id"`
	SHA   string `json:"sha"`
	State string `json:"state"`
	IID   int64  `json:"iid"`
}

func render(res Result) ([]byte, error) {
	a := answer{Action: string(res.Action), Reason: res.Reason, Pins: []answeredPin{}}
	if res.Err != nil {
		a.Error = res.Err.Error()
	}
	for _, p := range res.Pins {
		a.Pins = append(a.Pins, answeredPin{ID: int64(p.PipelineID), SHA: string(p.SHA), State: string(p.State), IID: int64(p.MergeRequestIID)})
	}
	return json.Marshal(a)
}

// deliver signs body as host does and hands it to the receiver with the
// event header and a delivery id ("" for none).
func (e *env) deliver(host Host, event, id string, body []byte, extra ...string) ([]byte, answer, error) {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	switch host {
	case GitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Token", gitlabToken)
		if id != "" {
			h.Set("Idempotency-Key", id)
		}
	case GitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-Hub-Signature-256", "sha256="+testdata.HMACHex(githubSecret, body))
		if id != "" {
			h.Set("X-GitHub-Delivery", id)
		}
	case Gitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Signature", testdata.HMACHex(giteaSecret, body))
		if id != "" {
			h.Set("X-Gitea-Delivery", id)
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	raw, err := e.rcv.Receive(context.Background(), host, h, body, render)
	var a answer
	if err == nil {
		if jerr := json.Unmarshal(raw, &a); jerr != nil {
			e.t.Fatalf("answer %q: %v", raw, jerr)
		}
	}
	return raw, a, err
}

func (e *env) mustDeliver(host Host, event, id string, body []byte, wantAction Action) answer {
	e.t.Helper()
	_, a, err := e.deliver(host, event, id, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", host, event, err)
	}
	if a.Action != string(wantAction) {
		e.t.Fatalf("%s %s: action %q (%s %s), want %q", host, event, a.Action, a.Reason, a.Error, wantAction)
	}
	return a
}

// ref reads a pipeline ref with the git CLI.
func (e *env) ref(id int) (string, bool) {
	e.t.Helper()
	return e.proj.RefSHA(e.t, "refs/pipelines/"+itoa(id))
}

func itoa(id int) string { return jsonInt(id) }

// count reads refkeeper_webhook_deliveries_total{host,event,action} from
// the registry, as a scrape would.
func (e *env) count(host, event, action string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[string]string{"host": host, "event": event, "action": action}
	for _, mf := range mfs {
		if mf.GetName() != "refkeeper_webhook_deliveries_total" {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func jsonInt(id int) string { b, _ := json.Marshal(id); return string(b) }

// closed reads, from Redis itself, whether the pin's record says its merge
// request was closed.
func (e *env) closed(id refs.PipelineID) bool {
	e.t.Helper()
	v, err := e.redis.Client(e.t).HGet(context.Background(), refs.DefaultKeyPrefix+":{group/app}:pin:"+id.String(), "mrclosed").Result()
	if err != nil && err.Error() != "redis: nil" {
		e.t.Fatalf("read pin %d: %v", id, err)
	}
	return v == "1"
}

func (e *env) state(id refs.PipelineID) refs.Pin {
	e.t.Helper()
	p, err := e.svc.Get(context.Background(), "group/app", id)
	if err != nil {
		e.t.Fatalf("get pin %d: %v", id, err)
	}
	return p
}

// GitLab's example pipeline (31, merge request 1) as other statuses: the
// first "status" and "finished_at" of the example are object_attributes'.
func gitlabStatus(t *testing.T, body []byte, status string) []byte {
	t.Helper()
	body = testdata.HookEdit(t, body, `"status": "success",`, `"status": "`+status+`",`)
	switch status {
	case "success", "failed", "canceled", "skipped":
	default:
		body = testdata.HookEdit(t, body, `"finished_at": "2016-08-12 15:26:29 UTC",`, `"finished_at": null,`)
	}
	return body
}

func TestGitLabPipelineLifecycle(t *testing.T) {
	e := newEnv(t)
	success := e.payload("gitlab-pipeline-success.json")

	a := e.mustDeliver(GitLab, "Pipeline Hook", "k1", gitlabStatus(t, success, "pending"), Pinned)
	if len(a.Pins) != 1 || a.Pins[0].ID != 31 || a.Pins[0].SHA != e.proj.Merge || a.Pins[0].IID != 1 {
		t.Fatalf("pending pinned %+v, want pipeline 31 at %s for merge request 1", a.Pins, e.proj.Merge)
	}
	if sha, ok := e.ref(31); !ok || sha != e.proj.Merge {
		t.Fatalf("refs/pipelines/31 = %q %v, want %s", sha, ok, e.proj.Merge)
	}
	e.mustDeliver(GitLab, "Pipeline Hook", "k2", gitlabStatus(t, success, "running"), Pinned)
	a = e.mustDeliver(GitLab, "Pipeline Hook", "k3", success, Finished)
	if a.Pins[0].State != "finished" {
		t.Fatalf("success left the pin %s", a.Pins[0].State)
	}

	// A running sent before the success but delivered after it: every
	// build time in it is no later than the pipeline's finish.
	a = e.mustDeliver(GitLab, "Pipeline Hook", "k4", gitlabStatus(t, success, "running"), Ignored)
	if !strings.Contains(a.Reason, "late") || e.state(31).State != refs.StateFinished {
		t.Fatalf("late running: %q, pin %s; want it ignored as late and the pin finished", a.Reason, e.state(31).State)
	}

	// A retried job: its build started after the pipeline finished.
	retried := testdata.HookEdit(t, gitlabStatus(t, success, "running"), `"started_at": null,`, `"started_at": "2016-08-12 15:30:00 UTC",`)
	a = e.mustDeliver(GitLab, "Pipeline Hook", "k5", retried, Pinned)
	if !strings.Contains(a.Reason, "re-opened") || e.state(31).State != refs.StatePinned {
		t.Fatalf("retried running: %q, pin %s; want it re-opened", a.Reason, e.state(31).State)
	}

	// The first success, delivered again late under a new id, must not
	// finish the re-opened pipeline; its next success does.
	a = e.mustDeliver(GitLab, "Pipeline Hook", "k6", success, Ignored)
	if !strings.Contains(a.Reason, "late") || e.state(31).State != refs.StatePinned {
		t.Fatalf("late success: %q, pin %s; want it ignored", a.Reason, e.state(31).State)
	}
	again := testdata.HookEdit(t, success, `"finished_at": "2016-08-12 15:26:29 UTC",`, `"finished_at": "2016-08-12 15:31:00 UTC",`)
	e.mustDeliver(GitLab, "Pipeline Hook", "k7", again, Finished)

	// The merge request is merged: the finished pin expires now.
	merged := testdata.HookEdit(t, e.payload("gitlab-merge_request.json"), `"action": "open",`, `"action": "merge",`)
	a = e.mustDeliver(GitLab, "Merge Request Hook", "k8", merged, Closed)
	if len(a.Pins) != 1 || a.Pins[0].ID != 31 {
		t.Fatalf("close answered %+v, want pipeline 31", a.Pins)
	}
	if p := e.state(31); !e.closed(31) || p.ExpiresAt.After(time.Now()) {
		t.Fatalf("after merge: closed %v, expires %v; want closed and expired", e.closed(31), p.ExpiresAt)
	}
	if sha, ok := e.ref(31); !ok || sha != e.proj.Merge {
		t.Fatalf("the ref went before its deletion ran: %q %v", sha, ok)
	}
}

func TestGitLabClosedAction(t *testing.T) {
	e := newEnv(t)
	e.mustDeliver(GitLab, "Pipeline Hook", "", gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "created"), Pinned)
	closed := testdata.HookEdit(t, e.payload("gitlab-merge_request.json"), `"action": "open",`, `"action": "close",`)
	a := e.mustDeliver(GitLab, "Merge Request Hook", "", closed, Closed)
	if len(a.Pins) != 1 || a.Pins[0].State != "pinned" || !e.closed(31) {
		t.Fatalf("close of a running pipeline's merge request: %+v", a.Pins)
	}
}

func TestGitLabActiveStatusesPin(t *testing.T) {
	for i, status := range []string{"created", "waiting_for_resource", "preparing", "pending", "running"} {
		t.Run(status, func(t *testing.T) {
			e := newEnv(t)
			body := gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), status)
			e.mustDeliver(GitLab, "Pipeline Hook", "s"+jsonInt(i), body, Pinned)
			if _, ok := e.ref(31); !ok {
				t.Fatal("no ref")
			}
		})
	}
	for _, status := range []string{"failed", "canceled", "skipped"} {
		t.Run(status, func(t *testing.T) {
			e := newEnv(t)
			e.mustDeliver(GitLab, "Pipeline Hook", "", gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "running"), Pinned)
			e.mustDeliver(GitLab, "Pipeline Hook", "", gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), status), Finished)
		})
	}
}

func TestGitHubWorkflowRunLifecycle(t *testing.T) {
	e := newEnv(t)
	want := e.proj.RecomputeMerge(t, e.head, e.proj.Second, "merge", gitops.DefaultIdentity.Name, gitops.DefaultIdentity.Email)

	a := e.mustDeliver(GitHub, "workflow_run", "d1", e.payload("github-workflow_run-requested.json"), Pinned)
	if len(a.Pins) != 1 || a.Pins[0].ID != 289782451 || a.Pins[0].SHA != want || a.Pins[0].IID != 2 {
		t.Fatalf("requested pinned %+v, want run 289782451 at the computed merge %s for pull request 2", a.Pins, want)
	}
	if sha, ok := e.ref(289782451); !ok || sha != want {
		t.Fatalf("ref = %q %v, want %s", sha, ok, want)
	}
	e.mustDeliver(GitHub, "workflow_run", "d2", e.payload("github-workflow_run-completed.json"), Finished)

	// The same run's requested, late, and then a re-run of it.
	e.mustDeliver(GitHub, "workflow_run", "d3", e.payload("github-workflow_run-requested.json"), Ignored)
	if e.state(289782451).State != refs.StateFinished {
		t.Fatal("a late requested re-opened the run")
	}
	rerun := testdata.HookEdit(t, e.payload("github-workflow_run-requested.json"),
		`"updated_at": "2020-10-05T16:33:24Z"`, `"updated_at": "2020-10-05T16:40:00Z"`)
	e.mustDeliver(GitHub, "workflow_run", "d4", rerun, Pinned)
	if e.state(289782451).State != refs.StatePinned {
		t.Fatal("a re-run did not re-open the run")
	}

	a = e.mustDeliver(GitHub, "pull_request", "d5", e.payload("github-pull_request-closed.json"), Closed)
	if len(a.Pins) != 1 || a.Pins[0].ID != 289782451 || !e.closed(289782451) {
		t.Fatalf("closed answered %+v", a.Pins)
	}
}

func TestGiteaPullRequestClosed(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.svc.Pin(context.Background(), refs.PinRequest{Project: "group/app", PipelineID: 5, SHA: refs.ObjectID(e.proj.Merge), MergeRequestIID: 1}); err != nil {
		t.Fatal(err)
	}
	body := e.payload("gitea-pull_request-closed.json")
	a := e.mustDeliver(Gitea, "pull_request", "g1", body, Closed)
	if len(a.Pins) != 1 || a.Pins[0].ID != 5 || !e.closed(5) {
		t.Fatalf("closed answered %+v", a.Pins)
	}
	// Forgejo: its own headers only.
	h := http.Header{"X-Forgejo-Event": {"pull_request"}, "X-Forgejo-Signature": {testdata.HMACHex(giteaSecret, body)}}
	raw, err := e.rcv.Receive(context.Background(), Gitea, h, body, render)
	if err != nil || !strings.Contains(string(raw), `"action":"closed"`) {
		t.Fatalf("forgejo delivery = %s, %v", raw, err)
	}
}

func TestIgnoredDeliveries(t *testing.T) {
	e := newEnv(t)
	success := e.payload("gitlab-pipeline-success.json")
	running := gitlabStatus(t, success, "running")
	cases := []struct {
		name        string
		host        Host
		event       string
		body        []byte
		extra       []string
		wantInReply string
	}{
		{"unknown project", GitLab, "Pipeline Hook", testdata.HookEdit(t, running, `"path_with_namespace": "group/app"`, `"path_with_namespace": "group/other"`), nil, "unknown project group/other"},
		{"not a project name", GitLab, "Pipeline Hook", testdata.HookEdit(t, running, `"path_with_namespace": "group/app"`, `"path_with_namespace": "../etc"`), nil, "not a project name"},
		{"manual pipeline", GitLab, "Pipeline Hook", gitlabStatus(t, success, "manual"), nil, "is manual"},
		{"scheduled pipeline", GitLab, "Pipeline Hook", gitlabStatus(t, success, "scheduled"), nil, "is scheduled"},
		{"pipeline without a merge request", GitLab, "Pipeline Hook", testdata.HookEdit(t, running, `"merge_request": {`, `"merge_request": null, "not_a_merge_request": {`), nil, "not for a merge request"},
		{"finish of a pipeline never pinned", GitLab, "Pipeline Hook", success, nil, "never pinned"},
		{"merge request opened", GitLab, "Merge Request Hook", e.payload("gitlab-merge_request.json"), nil, `action \"open\"`},
		{"another gitlab event", GitLab, "Push Hook", []byte(`{"object_kind":"push"}`), nil, `event \"Push Hook\"`},
		{"workflow run without a pull request", GitHub, "workflow_run", e.payload("github-workflow_run-requested-no-pr.json"), nil, "not for a pull request"},
		{"workflow run never pinned completes", GitHub, "workflow_run", e.payload("github-workflow_run-completed.json"), nil, "never pinned"},
		{"github ping", GitHub, "ping", []byte(`{"zen":"Keep it logically awesome."}`), nil, `event \"ping\"`},
		{"gitea label event", Gitea, "pull_request", e.payload("gitea-pull_request-closed.json"), []string{"X-Gitea-Event-Type", "pull_request_label"}, "pull_request_label"},
		{"unknown project, github", GitHub, "pull_request", []byte(strings.ReplaceAll(string(e.payload("github-pull_request-closed.json")), "group/app", "group/other")), nil, "unknown project"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, a, err := e.deliver(c.host, c.event, "", c.body, c.extra...)
			if err != nil || a.Action != "ignored" || !strings.Contains(string(raw), c.wantInReply) {
				t.Fatalf("answer %s, %v; want ignored with %s", raw, err, c.wantInReply)
			}
			if refs := e.proj.Refs(t, "refs/pipelines/"); len(refs) != 0 {
				t.Fatalf("an ignored delivery wrote %v", refs)
			}
		})
	}
}

func TestReplayedDelivery(t *testing.T) {
	e := newEnv(t)
	pending := gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "pending")
	first, _, err := e.deliver(GitLab, "Pipeline Hook", "same-key", pending)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Finish(context.Background(), "group/app", 31); err != nil {
		t.Fatal(err)
	}
	// Redelivered, with a build started later (it would re-open the pin if
	// it were applied): answered as before, and nothing changes.
	later := testdata.HookEdit(t, gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "running"), `"started_at": null,`, `"started_at": "2030-01-01 00:00:00 UTC",`)
	again, _, err := e.deliver(GitLab, "Pipeline Hook", "same-key", later)
	if err != nil || string(again) != string(first) {
		t.Fatalf("replay = %s, %v; want %s", again, err, first)
	}
	if st := e.state(31).State; st != refs.StateFinished {
		t.Fatalf("the replay changed the pin to %s", st)
	}
	// GitLab's webhook UUID, when there is no Idempotency-Key.
	h := []string{"X-Gitlab-Webhook-UUID", "uuid-1"}
	_, a, err := e.deliver(GitLab, "Merge Request Hook", "", e.payload("gitlab-merge_request.json"), h...)
	if err != nil || a.Action != "ignored" {
		t.Fatal(a, err)
	}
	merged := testdata.HookEdit(t, e.payload("gitlab-merge_request.json"), `"action": "open",`, `"action": "merge",`)
	_, a, err = e.deliver(GitLab, "Merge Request Hook", "", merged, h...)
	if err != nil || a.Action != "ignored" || e.closed(31) {
		t.Fatalf("replayed uuid: %+v %v; want the first answer and no close", a, err)
	}
	// The same id from another host is another delivery.
	if _, a, _ := e.deliver(GitHub, "pull_request", "same-key", e.payload("github-pull_request-closed.json")); a.Action != "closed" {
		t.Fatalf("github delivery with a gitlab id = %+v, want closed", a)
	}
	if got := e.count("gitlab", "pipeline", "replayed"); got != 1 {
		t.Fatalf("replayed deliveries counted %v, want 1", got)
	}
}

func TestFailedForGoodIsRemembered(t *testing.T) {
	e := newEnv(t)
	e.vars["SHA"] = strings.Repeat("ab", 20) // not an object of the repository
	body := gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "running")
	first, a, err := e.deliver(GitLab, "Pipeline Hook", "f1", body)
	if err != nil || a.Action != "failed" || !strings.Contains(a.Error, "not a commit") {
		t.Fatalf("answer %s, %v; want failed", first, err)
	}
	if _, a, _ = e.deliver(GitLab, "Pipeline Hook", "f1", body); a.Action != "failed" {
		t.Fatalf("replay = %+v", a)
	}
	if got := e.count("gitlab", "pipeline", "failed"); got != 1 {
		t.Fatalf("failed deliveries counted %v, want 1 (the replay is counted as replayed)", got)
	}
}

func TestMalformedAndUnsigned(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.deliver(GitHub, "workflow_run", "", []byte(`{"action": "requested",`))
	var me *MalformedError
	if !errors.As(err, &me) {
		t.Fatalf("malformed body: %v, want *MalformedError", err)
	}
	_, _, err = e.deliver(GitLab, "Pipeline Hook", "", []byte(`{"object_attributes": {"id": "31"}}`))
	if !errors.As(err, &me) {
		t.Fatalf("id as a string: %v, want *MalformedError", err)
	}
	h := http.Header{}
	h.Set("X-GitHub-Event", "workflow_run")
	h.Set("X-Hub-Signature-256", "sha256="+testdata.HMACHex("wrong", nil))
	_, err = e.rcv.Receive(context.Background(), GitHub, h, e.payload("github-workflow_run-requested.json"), render)
	var ue *UnauthorizedError
	if !errors.As(err, &ue) {
		t.Fatalf("bad signature: %v", err)
	}
	if refs := e.proj.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("a rejected delivery wrote %v", refs)
	}
	if got := e.count("github", "workflow_run", "rejected"); got != 1 {
		t.Fatalf("rejected counted %v", got)
	}
}

func TestTransientFailureIsNotRemembered(t *testing.T) {
	e := newEnv(t)
	body := gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "running")
	e.redis.Stop(t)
	_, _, err := e.deliver(GitLab, "Pipeline Hook", "t1", body)
	if !refs.IsUnavailable(err) {
		t.Fatalf("with Redis down: %v, want a transient error", err)
	}
	e.redis.Start(t)
	e.mustDeliver(GitLab, "Pipeline Hook", "t1", body, Pinned)
	if _, ok := e.ref(31); !ok {
		t.Fatal("the redelivery did not pin")
	}
	if got := e.count("gitlab", "pipeline", "unavailable"); got != 1 {
		t.Fatalf("unavailable counted %v", got)
	}
}

// A transient failure with Redis up (a ref lock another writer holds): the
// answer is not remembered, so the host's redelivery pins.
func TestTransientGitFailureIsNotRemembered(t *testing.T) {
	e := newEnv(t)
	body := gitlabStatus(t, e.payload("gitlab-pipeline-success.json"), "running")
	lock := filepath.Join(e.proj.Dir, "refs", "pipelines", "31.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.deliver(GitLab, "Pipeline Hook", "t2", body); !refs.IsUnavailable(err) {
		t.Fatalf("with the ref locked: %v, want a transient error", err)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(GitLab, "Pipeline Hook", "t2", body, Pinned)
	if _, ok := e.ref(31); !ok {
		t.Fatal("the redelivery did not pin")
	}
}
