package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestRacesAcrossTwoProcesses: finish and re-pin racing on one pin, and
// hundreds of distinct pins at once, through two processes sharing Redis and
// the repos root. No 5xx anywhere.
func TestRacesAcrossTwoProcesses(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	servers := []*server{
		startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api"),
		startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api"),
	}
	var fiveHundreds atomic.Int64
	call := func(i int, method, path, body string) int {
		code, _ := servers[i%2].call(t, method, path, body)
		if code >= 500 {
			fiveHundreds.Add(1)
		}
		return code
	}

	t.Run("finish and re-pin", func(t *testing.T) {
		if code := call(0, "PUT", apiBase+"/pipelines/50/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
			t.Fatalf("pin = %d", code)
		}
		var wg sync.WaitGroup
		for g := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 15 {
					var code int
					if (g+i)%2 == 0 {
						code = call(g+i, "POST", apiBase+"/pipelines/50/finish", "")
					} else {
						code = call(g+i, "PUT", apiBase+"/pipelines/50/ref", `{"sha":"`+p.c1+`"}`)
					}
					if code != 200 {
						t.Errorf("goroutine %d op %d: %d", g, i, code)
					}
				}
			}()
		}
		wg.Wait()
		code, pin := servers[0].call(t, "GET", apiBase+"/pipelines/50/ref", "")
		state := pin["state"]
		if code != 200 || (state != "pinned" && state != "finished") || pin["sha"] != p.c1 {
			t.Fatalf("pin after the race = %d %v", code, pin)
		}
		if state == "finished" && pin["expires_at"] == nil || state == "pinned" && pin["expires_at"] != nil {
			t.Fatalf("inconsistent pin: %v", pin)
		}
		if sha, ok := p.git.RefSHA(t, "refs/pipelines/50"); !ok || sha != p.c1 {
			t.Fatalf("ref after the race: %s %v", sha, ok)
		}
	})

	t.Run("hundreds of distinct pins", func(t *testing.T) {
		const pins, workers = 400, 16
		ids := make(chan int, pins)
		for id := 1000; id < 1000+pins; id++ {
			ids <- id
		}
		close(ids)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range ids {
					if code := call(w, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), `{"sha":"`+p.c2+`"}`); code != 201 {
						t.Errorf("pin %d: %d", id, code)
					}
				}
			}()
		}
		wg.Wait()
		refs := p.git.Refs(t, "refs/pipelines/1")
		if len(refs) != pins {
			t.Fatalf("%d refs under refs/pipelines/1…, want %d", len(refs), pins)
		}
	})
	if n := fiveHundreds.Load(); n != 0 {
		t.Fatalf("%d answers were 5xx", n)
	}
}

// TestKill9: a process killed with deletions pending and a sweep under way
// loses nothing: after a restart every expired ref goes within one GC
// interval, and no ref of a pinned pin is ever missing.
func TestKill9(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	flags := []string{"--repos", p.root, "--redis", r.URL(), "--retention", "1s", "--gc-interval", "2s"}
	first := startServer(t, flags...)
	const pinned, finished = 40, 400
	for id := 1; id <= pinned+finished; id++ {
		if code, _ := first.call(t, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), `{"sha":"`+p.c1+`"}`); code != 201 {
			t.Fatalf("pin %d: %d", id, code)
		}
	}
	for id := pinned + 1; id <= pinned+finished; id++ {
		if code, _ := first.call(t, "POST", fmt.Sprintf("%s/pipelines/%d/finish", apiBase, id), ""); code != 200 {
			t.Fatalf("finish %d: %d", id, code)
		}
	}
	// Kill as soon as deletions have begun (or at once, if none has yet).
	testdata.WaitFor(t, "the first deletions", 10*time.Second, func() bool {
		return len(p.git.Refs(t, "refs/pipelines/")) < pinned+finished
	})
	first.Kill(t)
	t.Logf("killed with %d refs left", len(p.git.Refs(t, "refs/pipelines/")))

	second := startServer(t, flags...)
	checkPinned := func() {
		refs := p.git.Refs(t, "refs/pipelines/")
		for id := 1; id <= pinned; id++ {
			if refs[fmt.Sprintf("refs/pipelines/%d", id)] != p.c1 {
				t.Fatalf("ref of pinned pipeline %d is missing", id)
			}
		}
	}
	testdata.WaitFor(t, "every expired ref to go", 20*time.Second, func() bool {
		checkPinned()
		return len(p.git.Refs(t, "refs/pipelines/")) == pinned
	})
	// Killed again mid-way through deleting the rest, then restarted.
	for id := 1; id <= pinned/2; id++ {
		second.call(t, "POST", fmt.Sprintf("%s/pipelines/%d/finish", apiBase, id), "")
	}
	second.Kill(t)
	startServer(t, flags...)
	testdata.WaitFor(t, "the finished ones to go after the second kill", 20*time.Second, func() bool {
		return len(p.git.Refs(t, "refs/pipelines/")) == pinned/2
	})
	for id := pinned/2 + 1; id <= pinned; id++ {
		if _, ok := p.git.RefSHA(t, fmt.Sprintf("refs/pipelines/%d", id)); !ok {
			t.Fatalf("ref of pinned pipeline %d is missing", id)
		}
	}
}

// TestLockFiles: a stale ref lock is removed and the pin succeeds; a live one
// is 503 with Retry-After until it goes; a sweep skips a locked repository
// and comes back to it.
func TestLockFiles(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api", "--stale-lock-age", "1m", "--retention", "1ms")
	lock := func(name string, age time.Duration) string {
		path := filepath.Join(p.git.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		return path
	}

	stale := lock("refs/pipelines/1.lock", time.Hour)
	if code, _ := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin behind a stale lock = %d", code)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale lock not removed: %v", err)
	}
	if !strings.Contains(srv.Logs.String(), "removed stale lock file") {
		t.Fatal("stale lock removal not logged")
	}

	live := lock("refs/pipelines/2.lock", 0)
	start := time.Now()
	code, body := srv.call(t, "PUT", apiBase+"/pipelines/2/ref", `{"sha":"`+p.c1+`"}`)
	if code != 503 || errCode(body) != "unavailable" {
		t.Fatalf("pin behind a live lock = %d %v", code, body)
	}
	t.Logf("503 after %v", time.Since(start))
	if _, ok := p.git.RefSHA(t, "refs/pipelines/2"); ok {
		t.Fatal("ref created despite the lock")
	}
	os.Remove(live)
	if code, _ := srv.call(t, "PUT", apiBase+"/pipelines/2/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin after the lock went = %d", code)
	}

	// A held packed-refs.lock blocks deletes: the sweep skips the project.
	srv.call(t, "POST", apiBase+"/pipelines/1/finish", "")
	packed := lock("packed-refs.lock", 0)
	code, res := srv.call(t, "POST", "/api/v1/gc", "")
	if code != 200 || res["failed_projects"] != float64(1) || res["deleted"] != float64(0) {
		t.Fatalf("sweep of a locked repository = %d %v", code, res)
	}
	if _, ok := p.git.RefSHA(t, "refs/pipelines/1"); !ok {
		t.Fatal("ref deleted despite the lock")
	}
	os.Remove(packed)
	code, res = srv.call(t, "POST", "/api/v1/gc", "")
	if code != 200 || res["deleted"] != float64(1) || res["failed_projects"] != float64(0) {
		t.Fatalf("sweep after the lock went = %d %v", code, res)
	}
	if _, ok := p.git.RefSHA(t, "refs/pipelines/1"); ok {
		t.Fatal("expired ref still there")
	}
}

// TestRedisOutage: with Redis down, requests answer 503 with Retry-After
// within seconds and /readyz is 503; when Redis is back (empty: it kept
// nothing), the service recovers by itself and adopts the refs on disk
// without deleting any.
func TestRedisOutage(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gc-interval", "1h")
	for id := 1; id <= 5; id++ {
		srv.call(t, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), `{"sha":"`+p.c1+`"}`)
	}
	r.Stop(t)
	start := time.Now()
	req := func() (int, string) {
		resp, err := httpDo("PUT", srv.Base+apiBase+"/pipelines/9/ref", `{"sha":"`+p.c1+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	code, retryAfter := req()
	if took := time.Since(start); code != 503 || retryAfter == "" || took > 10*time.Second {
		t.Fatalf("pin with Redis down = %d, Retry-After %q, after %v", code, retryAfter, took)
	}
	t.Logf("503 after %v", time.Since(start))
	if code, _ := srv.call(t, "GET", "/readyz", ""); code != 503 {
		t.Fatalf("readyz with Redis down = %d", code)
	}
	r.Start(t)
	testdata.WaitFor(t, "readiness after Redis came back", 15*time.Second, func() bool {
		code, _ := srv.call(t, "GET", "/readyz", "")
		return code == 200
	})
	code, res := srv.call(t, "POST", "/api/v1/gc", "")
	if code != 200 || res["adopted"] != float64(5) || res["deleted"] != float64(0) {
		t.Fatalf("sweep after Redis lost everything = %d %v", code, res)
	}
	if refs := p.git.Refs(t, "refs/pipelines/"); len(refs) != 5 {
		t.Fatalf("refs after recovery: %v", refs)
	}
	if code, pin := srv.call(t, "PUT", apiBase+"/pipelines/9/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin after recovery = %d %v", code, pin)
	}
}
