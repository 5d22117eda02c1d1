package systest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestRedisFailoverLosesNoPin: a master, its replica and three sentinels,
// reached through the comma form of the sentinel URL. The replica is stopped
// (so replication lags), pins are acknowledged by the master alone, the
// master is killed with SIGKILL and the sentinels promote the replica: the
// pins' records are gone, their refs are not. Each request that names a
// lost pin brings it back and applies what it says; its fetch token works
// again; and the pins no request names come back with the next scheduled
// sweep, not after --reconcile-interval.
func TestRedisFailoverLosesNoPin(t *testing.T) {
	f := testdata.StartFailover(t)
	p := newProject(t)
	// No scheduled sweep runs while the requests below bring lost pins
	// back (sweeps fall on the interval's boundaries), so each recovery
	// is the request's own; a second replica whose sweeps run every 2 s
	// comes for the pins no request names.
	args := []string{"--repos", p.root, "--redis", f.CommaURL(), "--gc-interval", "24h", "--reconcile-interval", "24h",
		"--gitlab-hook-token", e2eGitLabToken}
	srv := startServer(t, args...)
	if code, pin := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin before the failover = %d %v", code, pin)
	}
	// The sweep the schedule queues at start reconciles group/app, and the
	// replica gets the marker that says so (and the pin): the failover
	// keeps them. The failover waits for that sweep to be done: a sweep
	// still queued would be in the replica's data and run after the
	// failover, before the requests below.
	testdata.WaitFor(t, "the first scheduled sweep", 30*time.Second, func() bool {
		return strings.Contains(srv.Logs.String(), `"msg":"gc sweep done"`)
	})
	replica := f.Replica.Client(t)
	testdata.WaitFor(t, "the reconcile marker on the replica", 30*time.Second, func() bool {
		return replica.Exists(t.Context(), "refkeeper:{group/app}:reconciled", "refkeeper:{group/app}:pin:1").Val() == 2
	})
	f.Replica.SaveAndStop(t)

	tokens := map[int]string{}
	for id := 11; id <= 17; id++ {
		code, pin := srv.call(t, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), `{"sha":"`+p.merge+`"}`)
		if code != 201 {
			t.Fatalf("pin %d = %d %v", id, code, pin)
		}
		tokens[id] = pin["fetch_token"].(string)
	}
	if code, pin := srv.call(t, "PUT", apiBase+"/pipelines/31/ref", `{"sha":"`+p.merge+`"}`); code != 201 {
		t.Fatalf("pin 31 = %d %v", code, pin)
	}

	f.Master.Kill(t)
	f.Replica.Start(t)
	// The loss is checked before the sentinels promote the replica: once
	// it is the master, the server's sweep may already have brought the pin
	// back. A replica whose master is dead takes no write, so an answer read
	// while it still says it is a replica is what the failover will keep.
	lost := replica.Exists(t.Context(), "refkeeper:{group/app}:pin:11").Val() == 0
	if role := replica.Do(t.Context(), "ROLE").Val(); fmt.Sprint(role) == "" || !strings.HasPrefix(fmt.Sprint(role), "[slave ") {
		t.Fatalf("the replica answered ROLE %v before the test could look at what it kept", role)
	}
	if !lost {
		t.Fatal("the restarted replica has pin 11: the test did not lose it")
	}
	f.WaitMaster(t, f.Replica.Addr(), 60*time.Second)
	testdata.WaitFor(t, "readiness after the failover", 60*time.Second, func() bool {
		code, _ := srv.call(t, "GET", "/readyz", "")
		return code == 200
	})

	// GET.
	if code, pin := srv.call(t, "GET", apiBase+"/pipelines/11/ref", ""); code != 200 || pin["state"] != "pinned" || pin["sha"] != p.merge {
		t.Fatalf("GET of a lost pin = %d %v", code, pin)
	}
	// A runner's fetch with the token the lost pin was answered with.
	url := strings.Replace(srv.Base, "http://", "http://job:"+tokens[12]+"@", 1) + "/git/group/app.git"
	if out, err := testdata.RunnerGit(t, t.TempDir(), "ls-remote", url); err != nil || strings.TrimSpace(out) != p.merge+"\trefs/pipelines/12" {
		t.Fatalf("fetch token of a lost pin: %v\n%s", err, out)
	}
	// PUT by merge request alone: the pin it had, with the merge request.
	p.git.Commit(t, "main", map[string]string{"later.txt": "later\n"}, "later")
	p.git.SetMergeRequestRef(t, testdata.MergeRequestIID, "main", "feature")
	code, pin := srv.call(t, "PUT", apiBase+"/pipelines/13/ref", fmt.Sprintf(`{"merge_request_iid":%d}`, testdata.MergeRequestIID))
	if code != 200 || pin["sha"] != p.merge || pin["merge_request_iid"] != float64(testdata.MergeRequestIID) {
		t.Fatalf("PUT by merge request of a lost pin = %d %v", code, pin)
	}
	// Finish.
	if code, pin := srv.call(t, "POST", apiBase+"/pipelines/14/finish", ""); code != 200 || pin["state"] != "finished" {
		t.Fatalf("finish of a lost pin = %d %v", code, pin)
	}
	// DELETE.
	if code, _ := srv.call(t, "DELETE", apiBase+"/pipelines/15/ref", ""); code != 204 || p.hasRef(t, 15) {
		t.Fatalf("DELETE of a lost pin = %d, ref still there %v", code, p.hasRef(t, 15))
	}
	if code, pin := srv.call(t, "GET", apiBase+"/pipelines/15/ref", ""); code != 200 || pin["state"] != "deleted" {
		t.Fatalf("GET after DELETE of a lost pin = %d %v", code, pin)
	}
	// A webhook: GitLab's running pipeline 31 of merge request 1.
	vars := map[string]string{"SHA": p.merge, "HEAD_SHA": p.c2, "BASE_SHA": p.c1}
	running := testdata.HookEdit(t, testdata.HookEdit(t, testdata.HookPayload(t, "gitlab-pipeline-success.json", vars),
		`"status": "success",`, `"status": "running",`), `"finished_at": "2016-08-12 15:26:29 UTC",`, `"finished_at": null,`)
	code, body := srv.deliver(t, "gitlab", running, map[string]string{"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": e2eGitLabToken, "Idempotency-Key": "failover-1"})
	wantAction(t, "running", code, body, "pinned")
	if code, pin := srv.call(t, "GET", apiBase+"/pipelines/31/ref", ""); code != 200 || pin["merge_request_iid"] != float64(1) || pin["sha"] != p.merge {
		t.Fatalf("pin after the webhook = %d %v", code, pin)
	}

	// Each of those came back by its request (no sweep has run since the
	// failover: 16 and 17 are still lost, and a listing does not recover
	// what it lists); DELETE records the deletion without recording the
	// pin first.
	recorded := grepLines(srv.Logs.String(), "pipeline ref had no record (Redis lost it): recorded again")
	for _, id := range []int{11, 12, 13, 14, 31} {
		if !strings.Contains(recorded, fmt.Sprintf(`"ref":"refs/pipelines/%d"`, id)) {
			t.Errorf("no log line says a request recorded refs/pipelines/%d again; the lines that say so:\n%s", id, recorded)
		}
	}
	pinned := func() map[float64]bool {
		_, list := srv.call(t, "GET", apiBase+"/pipelines?state=pinned&limit=1000", "")
		seen := map[float64]bool{}
		for _, pin := range list["pins"].([]any) {
			seen[pin.(map[string]any)["pipeline_id"].(float64)] = true
		}
		return seen
	}
	if seen := pinned(); seen[16] || seen[17] {
		t.Fatalf("pins 16 or 17 came back before any sweep ran after the failover: %v", seen)
	}

	// No request names 16 and 17: the next scheduled sweep brings them
	// back.
	sweeper := startServer(t, append(slices.Clone(args[:4]), "--gc-interval", "2s", "--reconcile-interval", "24h")...)
	testdata.WaitFor(t, "the sweep to bring pins 16 and 17 back", 60*time.Second, func() bool {
		seen := pinned()
		return seen[16] && seen[17]
	})
	url = strings.Replace(srv.Base, "http://", "http://job:"+tokens[17]+"@", 1) + "/git/group/app.git"
	if out, err := testdata.RunnerGit(t, t.TempDir(), "ls-remote", url); err != nil || !strings.Contains(out, "refs/pipelines/17") {
		t.Fatalf("fetch token of a pin the sweep brought back: %v\n%s", err, out)
	}
	for id := 11; id <= 17; id++ {
		if id != 15 && !p.hasRef(t, id) {
			t.Errorf("refs/pipelines/%d is gone", id)
		}
	}
	if logs := srv.Logs.String() + sweeper.Logs.String(); !strings.Contains(logs, "reconciling every project") {
		t.Errorf("no log line says the sweep reconciled after the failover:\n%s", logs)
	}
}
