package hooks

import (
	"encoding/json"
	"testing"
	"time"
)

func TestGitLabTime(t *testing.T) {
	want := time.Date(2016, 8, 12, 15, 26, 29, 0, time.UTC)
	cases := map[string]time.Time{
		`"2016-08-12 15:26:29 UTC"`:   want, // hooks
		`"2016-08-12 17:26:29 +0200"`: want,
		`"2016-08-12T15:26:29Z"`:      want, // the REST API's form
		`"2016-08-12T15:26:29.000Z"`:  want,
		`null`:                        {},
		`"yesterday"`:                 {}, // unknown: no time, never a failure
	}
	for in, wantT := range cases {
		var v gitlabTime
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !v.Equal(wantT) {
			t.Errorf("%s = %v, want %v", in, v.Time, wantT)
		}
	}
	var v gitlabTime
	if err := json.Unmarshal([]byte(`42`), &v); err == nil {
		t.Error("a number was taken as a time")
	}
}

func TestGitLabEventTimes(t *testing.T) {
	body := []byte(`{"object_attributes":{"id":3,"sha":"x","status":"running","finished_at":"2016-08-12 15:26:29 UTC"},
		"merge_request":{"iid":1},"project":{"path_with_namespace":"g/a"},
		"builds":[{"created_at":"2016-08-12 15:23:28 UTC","started_at":"2016-08-12 15:40:00 UTC","finished_at":null},
		          {"created_at":"2016-08-12 15:23:28 UTC","started_at":null,"finished_at":"2016-08-12 15:30:00 UTC"}]}`)
	ev, err := parseGitLab("Pipeline Hook", body)
	if err != nil {
		t.Fatal(err)
	}
	// Running: the latest thing a build did, not the pipeline's old finish.
	if want := time.Date(2016, 8, 12, 15, 40, 0, 0, time.UTC); ev.kind != kindPin || !ev.at.Equal(want) {
		t.Fatalf("running: kind %v at %v, want a pin at %v", ev.kind, ev.at, want)
	}
	body = []byte(`{"object_attributes":{"id":3,"status":"failed","finished_at":"2016-08-12 15:26:29 UTC"},
		"builds":[{"started_at":"2016-08-12 15:40:00 UTC"}]}`)
	if ev, err = parseGitLab("Pipeline Hook", body); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2016, 8, 12, 15, 26, 29, 0, time.UTC); ev.kind != kindFinish || !ev.at.Equal(want) {
		t.Fatalf("failed: kind %v at %v, want a finish at %v", ev.kind, ev.at, want)
	}
}

// Gitea's workflow_run has no updated_at: its order time is completed_at
// for completed, started_at for requested and in_progress, and a time
// Gitea has not got (the Unix epoch in its zone, Go's zero time) is none.
func TestGiteaWorkflowRunTimes(t *testing.T) {
	run := func(action, started, completed string) []byte {
		return []byte(`{"action":"` + action + `","workflow_run":{"id":7,"started_at":"` + started + `","completed_at":"` + completed + `",
			"pull_requests":[{"number":1,"head":{"sha":"h"},"base":{"ref":"main","sha":"b"}}]},"repository":{"full_name":"ci/app"}}`)
	}
	started := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	done := time.Date(2026, 12, 3, 11, 2, 0, 0, time.UTC)
	cases := []struct {
		name              string
		body              []byte
		wantKind          kind
		wantAt            time.Time
		wantTarget        string
		gitHubIgnoresKind bool
	}{
		{"requested, waiting", run("requested", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"), kindPin, time.Time{}, "refs/heads/main", false},
		{"requested, epoch in another zone", run("requested", "1970-01-01T01:00:00+01:00", "0001-01-01T00:00:00Z"), kindPin, time.Time{}, "refs/heads/main", false},
		{"in progress", run("in_progress", "2026-12-03T12:00:00+01:00", "1970-01-01T00:00:00Z"), kindPin, started, "refs/heads/main", true},
		{"completed", run("completed", "2026-12-03T11:00:00Z", "2026-12-03T11:02:00Z"), kindFinish, done, "", false},
	}
	for _, c := range cases {
		ev, err := parseGitea("workflow_run", "workflow_run", c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ev.kind != c.wantKind || !ev.at.Equal(c.wantAt) || ev.mergeTarget != c.wantTarget || ev.pipeline != 7 || ev.project != "ci/app" {
			t.Errorf("%s: kind %v at %v target %q, want kind %v at %v target %q", c.name, ev.kind, ev.at, ev.mergeTarget, c.wantKind, c.wantAt, c.wantTarget)
		}
		gh, err := parseGitHub("workflow_run", c.body)
		if err != nil {
			t.Fatalf("%s on GitHub: %v", c.name, err)
		}
		if c.gitHubIgnoresKind && gh.kind != kindIgnore {
			t.Errorf("%s on GitHub: kind %v, want ignored (GitHub's requested has updated_at)", c.name, gh.kind)
		}
	}
	if ev, _ := parseGitea("workflow_run", "workflow_run", []byte(`{"action":"requested","workflow_run":{"id":7,"pull_requests":[{"number":1,"head":{"sha":"h"},"base":{"ref":"","sha":"b"}}]}}`)); ev.kind != kindIgnore {
		t.Errorf("a run whose pull request names no base branch: kind %v, want ignored", ev.kind)
	}
}
