package api_test

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/pktline"
)

// slowBody sends a request whose body of n bytes arrives one byte every
// gap on a raw TCP connection, and answers the status line the server
// wrote and how many body bytes it had been sent by then.
func slowBody(t *testing.T, addr, head string, n int, gap time.Duration) (status string, sent int64) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n", head, n); err != nil {
		t.Fatal(err)
	}
	var count atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for range n {
			select {
			case <-stop:
				return
			case <-time.After(gap):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
			count.Add(1)
		}
	}()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v after %d body bytes", err, count.Load())
	}
	return strings.TrimSpace(line), count.Load()
}

// TestSlowBodyIsCut: a body sent byte by byte on /api/ and /hooks/ is cut
// at the body deadline and answered 408, long before it would be whole
// (100 bytes at one per 100 ms: 10 s).
func TestSlowBodyIsCut(t *testing.T) {
	f := newFixture(t, withHooks(hooks.GitLab), func(c *api.Config) { c.BodyTimeout = 500 * time.Millisecond })
	addr := f.srv.Listener.Addr().String()
	for _, head := range []string{
		"PUT " + p + "/pipelines/7/ref HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n",
		"POST /hooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: " + hookSecret + "\r\nX-Gitlab-Event: Pipeline Hook\r\n",
	} {
		status, sent := slowBody(t, addr, head, 100, 100*time.Millisecond)
		t.Logf("%s: %q after %d of 100 body bytes", strings.Fields(head)[1], status, sent)
		if !strings.Contains(status, " 408 ") || sent >= 100 {
			t.Errorf("%s: %q after %d of 100 body bytes, want 408 before the body is whole", strings.Fields(head)[1], status, sent)
		}
	}
}

// TestSlowFetchIsNotCut: a runner's fetch is not held to the API's body
// deadline: its negotiation may arrive slowly (here over a second, five
// times the API's deadline), and its pack, read by a slow runner, is served
// whole long after the body deadline passed. Meanwhile it holds the one
// turn of --max-git-http 1: another fetch waits, then gets 503 with
// Retry-After; once it is done, the next is served.
func TestSlowFetchIsNotCut(t *testing.T) {
	f := newFixture(t, func(c *api.Config) {
		c.BodyTimeout = 200 * time.Millisecond
		c.MaxGitHTTP, c.GitQueueWait = 1, 300*time.Millisecond
	})
	big := make([]byte, 24<<20) // incompressible: more than the sockets hold
	rand.Read(big)
	sha := f.git.Commit(t, "big", map[string]string{"big.bin": string(big)}, "big")
	body, err := pktline.Encode([]pktline.Packet{pktline.Line("want " + sha + " ofs-delta"), {Kind: pktline.Flush}, pktline.Line("done")})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		for i := range body {
			if i%20 == 0 {
				time.Sleep(200 * time.Millisecond) // a runner on a slow link
			}
			if _, err := pw.Write(body[i : i+1]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequest("POST", f.srv.URL+"/git/group/app.git/git-upload-pack", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sent := time.Since(start)
	var n int64
	paused := false
	buf := make([]byte, 256<<10)
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("fetch cut after %d bytes and %v: %v", n, time.Since(start), err)
		}
		if !paused {
			// A slow runner: git http-backend waits for it, blocked on
			// a full socket, for five times the API's body deadline.
			paused = true
			a := f.do(t, "GET", "/git/group/app.git/info/refs?service=git-upload-pack", "")
			t.Logf("a second fetch meanwhile: %d %s, Retry-After %q", a.status, a.raw, a.header.Get("Retry-After"))
			if a.status != 503 || a.errCode() != "unavailable" || a.header.Get("Retry-After") == "" {
				t.Errorf("a fetch beyond --max-git-http: %d %s", a.status, a.raw)
			}
			time.Sleep(time.Second)
		}
	}
	t.Logf("negotiation sent in %v, answered %d, %d bytes read whole in %v (the API's body deadline is 200ms)",
		sent.Round(time.Millisecond), resp.StatusCode, n, time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != 200 || n < 24<<20 {
		t.Errorf("fetch: %d, %d bytes", resp.StatusCode, n)
	}
	after, err := http.NewRequest("GET", f.srv.URL+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
	if err != nil {
		t.Fatal(err)
	}
	after.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(after)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a fetch after the slow one: %d", resp.StatusCode)
	}
}
