package systest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// memoryHighWater is a process's peak resident memory (VmHWM), in MiB.
func memoryHighWater(t *testing.T, pid int) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// TestHostileUpstreamCostsNoMemory: a mirror whose upstream streams 300
// MiB of `remote:` noise through git's stderr fails its clone, and the
// server's memory high-water mark stays far below the noise: git's stderr
// is kept to a bounded head and tail.
func TestHostileUpstreamCostsNoMemory(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	u := testdata.StartNoisyUpstream(t, 300<<20)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--upstream-allow", testdata.LoopbackUpstreams)
	before := memoryHighWater(t, srv.Cmd.Process.Pid)
	const api = "/api/v1/projects/noisy%2Fapp"
	if code, pj := srv.call(t, "PUT", api, fmt.Sprintf(`{"upstream": %q}`, u.URL())); code != 202 {
		t.Fatalf("register = %d %v", code, pj)
	}
	var pj map[string]any
	testdata.WaitFor(t, "the clone to fail", 2*time.Minute, func() bool {
		_, pj = srv.call(t, "GET", api, "")
		return pj["state"] == "failed"
	})
	after := memoryHighWater(t, srv.Cmd.Process.Pid)
	t.Logf("server memory high-water mark: %.0f MiB before, %.0f MiB after a clone streaming 300 MiB of remote: noise (last_error %q)",
		before, after, pj["last_error"])
	if after > 200 {
		t.Errorf("the server's memory high-water mark reached %.0f MiB", after)
	}
}

// TestDiskFloorEndToEnd: with --min-free-disk above the free space, a new
// mirror and a pin that must fetch from upstream get 507
// insufficient_storage with Retry-After, and nothing is written; a pin of a
// commit already here, and a runner's fetch of it, go on.
func TestDiskFloorEndToEnd(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	u := testdata.StartUpstream(t)
	creds := u.CredentialsFile(t, "up")
	args := []string{"--repos", p.root, "--redis", r.URL(), "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams}
	srv := startServer(t, args...)
	const mirror = "/api/v1/projects/mirrors%2Fup"
	srv.registerMirror(t, mirror, fmt.Sprintf(`{"upstream": %q, "host": "gitlab", "credential": "up"}`, u.URL()))
	srv.Stop(t)

	srv = startServer(t, append(args, "--min-free-disk", "1000TiB")...)
	check507 := func(what, method, path, body string) {
		t.Helper()
		resp, err := httpDo(method, srv.Base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		ans := decodeJSON(resp)
		t.Logf("%s: %d %v, Retry-After %q", what, resp.StatusCode, ans, resp.Header.Get("Retry-After"))
		if resp.StatusCode != 507 || errCode(ans) != "insufficient_storage" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s below the floor = %d %v, want 507 insufficient_storage with Retry-After", what, resp.StatusCode, ans)
		}
	}
	fetches := u.UploadPackPosts()
	check507("a new mirror", "PUT", "/api/v1/projects/mirrors%2Fnew", fmt.Sprintf(`{"upstream": %q}`, u.URL()))
	check507("a pin that fetches its merge ref", "PUT", mirror+"/pipelines/8/ref", `{"merge_request_iid": 1}`)
	if n := u.UploadPackPosts(); n != fetches {
		t.Errorf("the upstream served %d fetches below the floor", n-fetches)
	}
	if code, _ := srv.call(t, "GET", "/api/v1/projects/mirrors%2Fnew", ""); code != 404 {
		t.Errorf("the refused mirror exists: %d", code)
	}
	if p.hasRef(t, 8) {
		t.Error("a refused pin wrote its ref")
	}
	code, pin := srv.call(t, "PUT", "/api/v1/projects/group%2Fapp/pipelines/9/ref", fmt.Sprintf(`{"sha": %q}`, p.c1))
	if code != 201 {
		t.Fatalf("a pin of a commit here below the floor = %d %v", code, pin)
	}
	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q"); err != nil {
		t.Fatal(out)
	}
	if out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken,
		"fetch", "--depth=1", pin["fetch_url"].(string), pin["refspec"].(string)); err != nil {
		t.Errorf("a runner's fetch below the floor: %v\n%s", err, out)
	}
}

// TestSlowBodyIsCutEndToEnd: a webhook body sent a byte a second on a raw
// TCP socket is answered 408 once the 10 s body deadline passes, not held
// for the minute it would take.
func TestSlowBodyIsCutEndToEnd(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gitlab-hook-token", "hook-token-0123456789abcdef")
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /hooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: hook-token-0123456789abcdef\r\nX-Gitlab-Event: Pipeline Hook\r\nContent-Length: 60\r\n\r\n")
	sent := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		n := 0
		defer func() { sent <- n }()
		for range 60 {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if _, err := io.WriteString(conn, " "); err != nil {
				return
			}
			n++
		}
	}()
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		close(stop)
		t.Fatalf("no answer after %v: %v", time.Since(start), err)
	}
	resp.Body.Close()
	took := time.Since(start)
	close(stop)
	n := <-sent
	t.Logf("a body sent a byte a second: %d after %v and %d of 60 bytes", resp.StatusCode, took.Round(time.Millisecond), n)
	if resp.StatusCode != 408 || n >= 60 {
		t.Errorf("slow body: %d after %d of 60 bytes, want 408 before it is whole", resp.StatusCode, n)
	}
}
