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
