package systest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestEndToEnd drives the whole lifecycle through HTTP with real asynq
// workers, a real redis-server, and the git CLI as the runner.
func TestEndToEnd(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--retention", "2s", "--gc-interval", "1s")

	// Pin, re-pin, conflict.
	code, pin := srv.call(t, "PUT", apiBase+"/pipelines/7/ref", `{"sha":"`+p.c1+`"}`)
	if code != 201 || pin["sha"] != p.c1 || pin["state"] != "pinned" || pin["refspec"] != "+refs/pipelines/7:refs/pipelines/7" {
		t.Fatalf("pin = %d %v", code, pin)
	}
	if code, _ := srv.call(t, "PUT", apiBase+"/pipelines/7/ref", `{"sha":"`+p.c1+`"}`); code != 200 {
		t.Fatalf("re-pin = %d, want 200", code)
	}
	code, body := srv.call(t, "PUT", apiBase+"/pipelines/7/ref", `{"sha":"`+p.c2+`"}`)
	if code != 409 || errCode(body) != "ref_conflict" {
		t.Fatalf("conflicting pin = %d %v", code, body)
	}

	// Pin by merge request; the runner fetches it with the git CLI.
	code, byMR := srv.call(t, "PUT", apiBase+"/pipelines/8/ref", `{"merge_request_iid":12}`)
	if code != 201 || byMR["sha"] != p.merge {
		t.Fatalf("pin by merge request = %d %v", code, byMR)
	}
	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	fetch := func(id int) (string, error) {
		return testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken,
			"fetch", "--depth=1", byMR["fetch_url"].(string), fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", id, id))
	}
	if out, err := fetch(8); err != nil {
		t.Fatalf("runner fetch: %v\n%s", err, out)
	}
	if out, _ := testdata.RunnerGit(t, work, "rev-parse", "refs/pipelines/8"); strings.TrimSpace(out) != p.merge {
		t.Fatalf("runner got %s, want %s", out, p.merge)
	}

	// Finish: the ref stays for the retention window; a retried job re-opens it.
	code, fin := srv.call(t, "POST", apiBase+"/pipelines/7/finish", `{"status":"success"}`)
	if code != 200 || fin["state"] != "finished" || fin["expires_at"] == nil {
		t.Fatalf("finish = %d %v", code, fin)
	}
	if code, re := srv.call(t, "PUT", apiBase+"/pipelines/7/ref", `{"sha":"`+p.c1+`"}`); code != 200 || re["state"] != "pinned" {
		t.Fatalf("re-pin of a finished pin = %d %v", code, re)
	}
	// Past the old expires_at and a sweep later, the re-opened pin's ref is there.
	expires, _ := time.Parse(time.RFC3339Nano, fin["expires_at"].(string))
	testdata.WaitFor(t, "the old expires_at to pass", 10*time.Second, func() bool { return time.Now().After(expires.Add(time.Second)) })
	if code, _ := srv.call(t, "POST", "/api/v1/gc", ""); code != 200 {
		t.Fatalf("gc = %d", code)
	}
	if !p.hasRef(t, 7) {
		t.Fatal("a re-opened pin lost its ref at the old expires_at")
	}

	// Finished for good: the deletion task removes the ref after retention.
	srv.call(t, "POST", apiBase+"/pipelines/7/finish", "")
	// The ref goes first, then the record is marked deleted (a moment later).
	testdata.WaitFor(t, "the deletion of refs/pipelines/7", 20*time.Second, func() bool { return !p.hasRef(t, 7) })
	testdata.WaitFor(t, "pin 7 recorded as deleted", 5*time.Second, func() bool {
		code, gone := srv.call(t, "GET", apiBase+"/pipelines/7/ref", "")
		return code == 200 && gone["state"] == "deleted"
	})
	out, err := fetch(7)
	if err == nil || !strings.Contains(out, "couldn't find remote ref refs/pipelines/7") {
		t.Fatalf("fetch of a deleted ref: %v\n%s", err, out)
	}

	// Merge request closed while pipeline 8 runs: it expires as soon as it finishes.
	if code, closed := srv.call(t, "POST", apiBase+"/merge_requests/12/close", ""); code != 200 || len(closed["pins"].([]any)) != 1 {
		t.Fatalf("close = %d %v", code, closed)
	}
	if !p.hasRef(t, 8) {
		t.Fatal("closing a merge request deleted a running pipeline's ref")
	}
	srv.call(t, "POST", apiBase+"/pipelines/8/finish", "")
	testdata.WaitFor(t, "the deletion of refs/pipelines/8", 20*time.Second, func() bool { return !p.hasRef(t, 8) })

	// Explicit delete.
	srv.call(t, "PUT", apiBase+"/pipelines/9/ref", `{"sha":"`+p.c2+`"}`)
	if code, _ := srv.call(t, "DELETE", apiBase+"/pipelines/9/ref", ""); code != 204 || p.hasRef(t, 9) {
		t.Fatalf("delete = %d, ref present %v", code, p.hasRef(t, 9))
	}
	if code, body := srv.call(t, "DELETE", apiBase+"/pipelines/10/ref", ""); code != 404 || errCode(body) != "pin_not_found" {
		t.Fatalf("delete of nothing = %d %v", code, body)
	}
}

// TestAdoptionAndMaxAge: refs nobody pinned, and a pin whose finish never
// comes, live exactly max-age and then go.
func TestAdoptionAndMaxAge(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	p.git.PipelineRefs(t, 500, 2, p.c1)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--max-age", "4s", "--gc-interval", "1s")
	code, pinned := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c2+`"}`)
	if code != 201 {
		t.Fatalf("pin = %d", code)
	}
	created := map[int]time.Time{}
	created[1], _ = time.Parse(time.RFC3339Nano, pinned["created_at"].(string))
	testdata.WaitFor(t, "adoption of refs/pipelines/500 and 501", 10*time.Second, func() bool {
		for _, id := range []int{500, 501} {
			code, pin := srv.call(t, "GET", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), "")
			if code != 200 {
				return false
			}
			created[id], _ = time.Parse(time.RFC3339Nano, pin["created_at"].(string))
		}
		return true
	})
	// Every ref stays until max-age after it was first seen (pinned: created).
	for {
		alive := 0
		for id, c := range created {
			if time.Now().Before(c.Add(4*time.Second - 300*time.Millisecond)) {
				alive++
				if !p.hasRef(t, id) {
					t.Fatalf("refs/pipelines/%d deleted before max-age (first seen %v, now %v)", id, c, time.Now())
				}
			}
		}
		if alive == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	testdata.WaitFor(t, "max-age deletions", 20*time.Second, func() bool {
		return !p.hasRef(t, 500) && !p.hasRef(t, 501) && !p.hasRef(t, 1)
	})
	if refs := p.git.Refs(t, "refs/"); refs["refs/heads/main"] != p.c2 || refs["refs/merge-requests/12/merge"] != p.merge {
		t.Fatalf("refs outside refs/pipelines/ were touched: %v", refs)
	}
}

// TestPinRaceAcrossTwoServers: 50 clients pin one pipeline with two different
// SHAs through two server processes sharing Redis and the repos root. Exactly one
// creation; every other answer is 200 (same SHA) or 409; the ref never moves.
func TestPinRaceAcrossTwoServers(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	key := "--fetch-token-keys=shared-key-0123456789"
	a := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api", key)
	b := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api", key)
	const clients = 50
	codes := make([]int, clients)
	shas := make([]string, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv, sha := a, p.c1
			if i%2 == 1 {
				srv, sha = b, p.c2
			}
			shas[i] = sha
			<-start
			codes[i], _ = srv.call(t, "PUT", apiBase+"/pipelines/42/ref", `{"sha":"`+sha+`"}`)
		}()
	}
	close(start)
	wg.Wait()
	final, ok := p.git.RefSHA(t, "refs/pipelines/42")
	if !ok {
		t.Fatal("no ref after the race")
	}
	created := 0
	for i, code := range codes {
		switch {
		case code == http.StatusCreated:
			created++
			if shas[i] != final {
				t.Errorf("client %d created at %s but the ref is at %s", i, shas[i], final)
			}
		case code == http.StatusOK && shas[i] == final:
		case code == http.StatusConflict && shas[i] != final:
		default:
			t.Errorf("client %d (sha %s, ref at %s) got %d", i, shas[i][:8], final[:8], code)
		}
	}
	if created != 1 {
		t.Fatalf("%d creations, want exactly 1", created)
	}
	code, pin := a.call(t, "GET", apiBase+"/pipelines/42/ref", "")
	if code != 200 || pin["sha"] != final {
		t.Fatalf("pin = %d %v, ref at %s", code, pin, final)
	}
	// Replicas sharing the key accept each other's fetch tokens.
	url := strings.Replace(b.Base, "http://", "http://job:"+pin["fetch_token"].(string)+"@", 1) + "/git/group/app.git"
	if out, err := testdata.RunnerGit(t, t.TempDir(), "ls-remote", url); err != nil || !strings.Contains(out, final+"\trefs/pipelines/42") {
		t.Fatalf("fetch token of replica a at replica b: %v\n%s", err, out)
	}
}
