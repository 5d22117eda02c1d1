package systest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// slowPin is a PUT whose body the client sends in two parts. It asks for
// 100-continue, so the server's answer to that says the handler runs and
// reads the body: then the request is in flight, not a connection the
// shutdown may close as idle.
type slowPin struct {
	conn net.Conn
	rd   *bufio.Reader
	body string
}

func startSlowPin(t *testing.T, base string, id int, sha string) *slowPin {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := `{"sha":"` + sha + `"}`
	fmt.Fprintf(conn, "PUT %s/pipelines/%d/ref HTTP/1.1\r\nHost: refkeeper\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", apiBase, id, testToken, len(body))
	p := &slowPin{conn: conn, rd: bufio.NewReader(conn), body: body}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(p.rd, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("waiting for 100 Continue: %v %v", resp, err)
	}
	if _, err := io.WriteString(conn, body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	return p
}

// finish sends the rest of the body and answers the status.
func (p *slowPin) finish(t *testing.T) int {
	t.Helper()
	if _, err := io.WriteString(p.conn, p.body[len(p.body)/2:]); err != nil {
		t.Fatalf("sending the rest of the body: %v", err)
	}
	_ = p.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(p.rd, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestShutdownHasOneBudget: after SIGTERM, a request in flight that
// completes within --shutdown-timeout gets its answer, one that never
// completes is cut off, and the process (HTTP, worker, scheduler, Redis,
// git) is gone within the budget, not after a wait per step.
func TestShutdownHasOneBudget(t *testing.T) {
	const budget = 4 * time.Second
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gc-interval", "1h",
		"--shutdown-timeout", budget.String()) // --role all: the worker and scheduler stop too

	finishing := startSlowPin(t, srv.Base, 1, p.c1)
	stuck := startSlowPin(t, srv.Base, 2, p.c1)

	sent := time.Now()
	srv.Signal(t, syscall.SIGTERM)
	testdata.WaitFor(t, "the shutdown to begin", 10*time.Second, func() bool {
		return strings.Contains(srv.Logs.String(), "shutting down")
	})
	if code := finishing.finish(t); code != http.StatusCreated {
		t.Fatalf("the request finished during the shutdown answered %d, want 201\n%s", code, srv.Logs.String())
	}

	// The budget, and a margin for a loaded machine: far less than the
	// 30 s a single step used to wait for the stuck request alone.
	var code int
	select {
	case <-srv.Exited():
		code = srv.ExitCode()
	case <-time.After(budget + 8*time.Second):
		t.Fatalf("still running %v after SIGTERM with --shutdown-timeout %v\n%s", time.Since(sent), budget, srv.Logs.String())
	}
	took := time.Since(sent)
	if code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, srv.Logs.String())
	}
	if !strings.Contains(srv.Logs.String(), "cut off requests still running") {
		t.Fatalf("the cut-off request was not logged\n%s", srv.Logs.String())
	}
	_ = stuck.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(stuck.rd, nil); err == nil && resp.StatusCode < 300 {
		t.Fatalf("the request that never completed answered %d", resp.StatusCode)
	}
	if !p.hasRef(t, 1) || p.hasRef(t, 2) {
		t.Fatalf("refs after shutdown: pipeline 1 %v (want there), 2 %v (want absent)", p.hasRef(t, 1), p.hasRef(t, 2))
	}
	t.Logf("exited %v after SIGTERM (budget %v)", took.Round(time.Millisecond), budget)
}

// TestSecondSignalEndsAtOnce: a second SIGTERM during a graceful shutdown
// ends the process without waiting for the rest of the budget.
func TestSecondSignalEndsAtOnce(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api", "--shutdown-timeout", "10m")
	startSlowPin(t, srv.Base, 1, p.c1) // never completes: the shutdown would wait for it
	srv.Signal(t, syscall.SIGTERM)
	testdata.WaitFor(t, "the shutdown to begin", 10*time.Second, func() bool {
		return strings.Contains(srv.Logs.String(), "shutting down")
	})
	// The signal handler is given back right after the first signal's
	// context ends; a second signal sent before that would be swallowed, so
	// send one until the process goes.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-srv.Exited():
			if code := srv.ExitCode(); code != -1 {
				t.Fatalf("exit status %d, want death by the second signal", code)
			}
			return
		case <-tick.C:
			_ = srv.Cmd.Process.Signal(syscall.SIGTERM)
		case <-deadline:
			t.Fatalf("a second SIGTERM did not end the process\n%s", srv.Logs.String())
		}
	}
}
