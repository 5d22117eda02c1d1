package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// kind is what a delivery asks of the domain.
type kind int

const (
	kindIgnore kind = iota
	kindPin
	kindFinish
	kindClose
)

// event is one delivery, parsed: what to do, to what, and the host's own
// time of it (zero: the payload gives none).
type event struct {
	// name is the metrics label of the host's event: one of a fixed set.
	name    string
	kind    kind
	reason  string // why it is ignored
	project string
	// pipeline and sha (or mergeSource and mergeTarget, for a computed
	// merge) name a pin; iid a merge request.
	pipeline                 int64
	sha                      string
	mergeSource, mergeTarget string
	iid                      int64
	at                       time.Time
}

func ignore(name, format string, args ...any) event {
	return event{name: name, kind: kindIgnore, reason: fmt.Sprintf(format, args...)}
}

// decode reads a JSON object loosely (hosts add fields all the time) but
// wholly: trailing data and wrong types are malformed.
func decode(h Host, body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return &MalformedError{Host: h, Err: err}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &MalformedError{Host: h, Err: errors.New("trailing data after the object")}
	}
	return nil
}

// parse maps a verified delivery to an event.
func parse(h Host, header http.Header, body []byte) (event, error) {
	switch h {
	case GitLab:
		return parseGitLab(header.Get("X-Gitlab-Event"), body)
	case GitHub:
		return parseGitHub(header.Get("X-GitHub-Event"), body)
	case Gitea:
		name, typ := header.Get("X-Gitea-Event"), header.Get("X-Gitea-Event-Type")
		if name == "" {
			name, typ = header.Get("X-Forgejo-Event"), header.Get("X-Forgejo-Event-Type")
		}
		return parseGitea(name, typ, body)
	}
	return event{}, fmt.Errorf("unknown host %q", h)
}

// gitlabTime reads GitLab's times: "2016-08-12 15:23:28 UTC" in hooks,
// RFC 3339 elsewhere; null or an unknown form is zero (no time).
type gitlabTime struct{ time.Time }

func (t *gitlabTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	t.Time = time.Time{}
	if s == nil {
		return nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05 MST", "2006-01-02 15:04:05 -0700", time.RFC3339Nano} {
		if v, err := time.Parse(layout, *s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type gitlabProject struct {
	PathWithNamespace string `json:"path_with_namespace"`
}

type gitlabPipeline struct {
	ObjectAttributes struct {
		ID         int64      `json:"id"`
		SHA        string     `json:"sha"`
		Status     string     `json:"status"`
		CreatedAt  gitlabTime `json:"created_at"`
		FinishedAt gitlabTime `json:"finished_at"`
	} `json:"object_attributes"`
	MergeRequest *struct {
		IID int64 `json:"iid"`
	} `json:"merge_request"`
	Project gitlabProject `json:"project"`
	Builds  []struct {
		CreatedAt  gitlabTime `json:"created_at"`
		StartedAt  gitlabTime `json:"started_at"`
		FinishedAt gitlabTime `json:"finished_at"`
	} `json:"builds"`
}

type gitlabMergeRequest struct {
	ObjectAttributes struct {
		IID    int64  `json:"iid"`
		Action string `json:"action"`
	} `json:"object_attributes"`
	Project gitlabProject `json:"project"`
}

func parseGitLab(name string, body []byte) (event, error) {
	switch name {
	case "Pipeline Hook":
		var p gitlabPipeline
		if err := decode(GitLab, body, &p); err != nil {
			return event{}, err
		}
		a := p.ObjectAttributes
		ev := event{name: "pipeline", project: p.Project.PathWithNamespace, pipeline: a.ID, sha: a.SHA}
		switch a.Status {
		case "created", "waiting_for_resource", "preparing", "pending", "running":
			if p.MergeRequest == nil {
				return ignore(ev.name, "pipeline %d is not for a merge request", a.ID), nil
			}
			ev.kind, ev.iid = kindPin, p.MergeRequest.IID
			// The latest thing any of its builds did: a build created or
			// started after the pipeline finished is a retried job.
			for _, b := range p.Builds {
				ev.at = later(later(later(ev.at, b.CreatedAt.Time), b.StartedAt.Time), b.FinishedAt.Time)
			}
		case "success", "failed", "canceled", "skipped":
			ev.kind = kindFinish
			ev.at = a.FinishedAt.Time
		case "manual", "scheduled":
			return ignore(ev.name, "pipeline %d is %s: its jobs may still run", a.ID, a.Status), nil
		default:
			return ignore(ev.name, "pipeline status %q does not change a pin", truncate(a.Status)), nil
		}
		return ev, nil
	case "Merge Request Hook":
		var mr gitlabMergeRequest
		if err := decode(GitLab, body, &mr); err != nil {
			return event{}, err
		}
		switch a := mr.ObjectAttributes; a.Action {
		case "merge", "close":
			return event{name: "merge_request", kind: kindClose, project: mr.Project.PathWithNamespace, iid: a.IID}, nil
		default:
			return ignore("merge_request", "merge request action %q does not close it", truncate(a.Action)), nil
		}
	}
	if err := decode(GitLab, body, &struct{}{}); err != nil {
		return event{}, err
	}
	return ignore("other", "%s; /hooks/gitlab acts on Pipeline Hook and Merge Request Hook", unhandled(name, "")), nil
}

type githubRepository struct {
	FullName string `json:"full_name"`
}

// workflowRun is the workflow_run payload of GitHub and of Gitea's Actions
// (Gitea 1.24 and later send it GitHub-shaped, with fewer fields: no
// updated_at, but started_at and completed_at).
type workflowRun struct {
	Action      string `json:"action"`
	WorkflowRun struct {
		ID int64 `json:"id"`
		// UpdatedAt is GitHub's; StartedAt and CompletedAt are what Gitea
		// sends instead (GitHub sends run_started_at, not read).
		UpdatedAt    hostTime `json:"updated_at"`
		StartedAt    hostTime `json:"started_at"`
		CompletedAt  hostTime `json:"completed_at"`
		PullRequests []struct {
			Number int64 `json:"number"`
			Head   struct {
				SHA string `json:"sha"`
			} `json:"head"`
			// Base.SHA is not read: on Gitea it is the merge base, on
			// GitHub the base as of the pull request's last update.
			Base struct {
				Ref string `json:"ref"`
			} `json:"base"`
		} `json:"pull_requests"`
	} `json:"workflow_run"`
	Repository githubRepository `json:"repository"`
}

// hostTime is an RFC 3339 time of GitHub's or Gitea's. Gitea writes a time
// it has not got yet (a run not started, not completed) as the Unix epoch
// in its own zone, or Go's zero time: both are no time. null or another
// form is no time too, never a failure.
type hostTime struct{ time.Time }

func (t *hostTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	t.Time = time.Time{}
	if s == nil {
		return nil
	}
	if v, err := time.Parse(time.RFC3339Nano, *s); err == nil && v.Unix() > 0 {
		t.Time = v.UTC()
	}
	return nil
}

// pullRequestEvent is GitHub's and Gitea's pull_request payload alike.
type pullRequestEvent struct {
	Action     string           `json:"action"`
	Number     int64            `json:"number"`
	Repository githubRepository `json:"repository"`
}

func parseGitHub(name string, body []byte) (event, error) {
	switch name {
	case "workflow_run":
		return parseWorkflowRun(GitHub, body)
	case "pull_request":
		return parsePullRequest(GitHub, name, body)
	}
	if err := decode(GitHub, body, &struct{}{}); err != nil {
		return event{}, err
	}
	label := "other"
	if name == "ping" {
		label = "ping"
	}
	return ignore(label, "%s; /hooks/github acts on workflow_run and pull_request", unhandled(name, "")), nil
}

// parseWorkflowRun maps GitHub's and Gitea's workflow_run alike: requested
// pins the run's computed merge, completed finishes it. The merge's target
// is the base branch by name (refs/heads/<base.ref>), so that the pin
// resolves it, on a mirror after fetching it, when the delivery arrives:
// neither host's base.sha is the branch's tip.
func parseWorkflowRun(h Host, body []byte) (event, error) {
	const name = "workflow_run"
	var w workflowRun
	if err := decode(h, body, &w); err != nil {
		return event{}, err
	}
	run := w.WorkflowRun
	ev := event{name: name, project: w.Repository.FullName, pipeline: run.ID, at: run.UpdatedAt.Time}
	switch w.Action {
	case "in_progress":
		if h != Gitea {
			return ignore(name, "workflow run action %q does not change a pin (requested pins, completed finishes)", w.Action), nil
		}
		// Gitea's requested of a re-run has no time (its new attempt has
		// not started), so it cannot re-open the finished pin; its
		// in_progress has the attempt's start, after the last completion.
		fallthrough
	case "requested":
		if len(run.PullRequests) == 0 {
			return ignore(name, "workflow run %d is not for a pull request of this repository", run.ID), nil
		}
		pr := run.PullRequests[0]
		if pr.Base.Ref == "" {
			return ignore(name, "workflow run %d names no base branch of pull request %d", run.ID, pr.Number), nil
		}
		ev.kind, ev.iid = kindPin, pr.Number
		ev.mergeSource, ev.mergeTarget = pr.Head.SHA, branchRef(pr.Base.Ref)
		if h == Gitea {
			// No updated_at: a run that waits has not started (no time),
			// one in progress has its attempt's start.
			ev.at = later(run.StartedAt.Time, run.CompletedAt.Time)
		}
	case "completed":
		ev.kind = kindFinish
		if h == Gitea {
			ev.at = run.CompletedAt.Time
		}
	default:
		return ignore(name, "workflow run action %q does not change a pin (requested pins, completed finishes)", truncate(w.Action)), nil
	}
	return ev, nil
}

// branchRef is a pull request's base branch as a full ref name: a branch
// may be named like a SHA, and a full name is never read as one.
func branchRef(branch string) string {
	if strings.HasPrefix(branch, "refs/") {
		return branch
	}
	return "refs/heads/" + branch
}

func parseGitea(name, typ string, body []byte) (event, error) {
	// Gitea names a pull request's label, review and sync events
	// "pull_request" too; X-Gitea-Event-Type tells them apart.
	if name == "pull_request" && (typ == "" || typ == "pull_request") {
		return parsePullRequest(Gitea, name, body)
	}
	if name == "workflow_run" {
		return parseWorkflowRun(Gitea, body)
	}
	if err := decode(Gitea, body, &struct{}{}); err != nil {
		return event{}, err
	}
	return ignore("other", "%s; /hooks/gitea acts on workflow_run and pull_request", unhandled(name, typ)), nil
}

// unhandled says which event a delivery was: Gitea's event and its type
// (X-Gitea-Event-Type) are often the same word, said once then.
func unhandled(name, typ string) string {
	if name == "" {
		return "a delivery without an event header is not handled"
	}
	if typ == "" || typ == name {
		return fmt.Sprintf("event %q is not handled", truncate(name))
	}
	return fmt.Sprintf("event %q of type %q is not handled", truncate(name), truncate(typ))
}

func parsePullRequest(h Host, name string, body []byte) (event, error) {
	var pr pullRequestEvent
	if err := decode(h, body, &pr); err != nil {
		return event{}, err
	}
	if pr.Action != "closed" {
		return ignore(name, "pull request action %q does not close it", truncate(pr.Action)), nil
	}
	return event{name: name, kind: kindClose, project: pr.Repository.FullName, iid: pr.Number}, nil
}

// truncate keeps a host's value short enough for an answer's reason.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
