package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testToken is the API token of every test server.
const testToken = "test-token-0123456789abcdef"

// syncBuffer collects a server's log lines while the test reads them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is `refkeeper serve` running in this process, as main runs it.
type testServer struct {
	base   string // http://127.0.0.1:port
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

var servingAddr = regexp.MustCompile(`"msg":"refkeeper serving","addr":"([^"]+)"`)

// startServer runs serve with the given flags on a free port and waits until
// it listens. Cleanup shuts it down as SIGTERM would and checks it exits 0.
func startServer(tb testing.TB, args ...string) *testServer {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{logs: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	full := append([]string{"serve", "--listen", "127.0.0.1:0", "--tokens", testToken, "--log-level", "debug"}, args...)
	go func() { s.done <- run(ctx, full, func(string) string { return "" }, io.Discard, s.logs) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := servingAddr.FindStringSubmatch(s.logs.String()); m != nil {
			s.base = "http://" + m[1]
			break
		}
		select {
		case code := <-s.done:
			tb.Fatalf("server exited with %d before serving:\n%s", code, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server did not start:\n%s", s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(func() { s.stop(tb) })
	return s
}

func (s *testServer) stop(tb testing.TB) {
	tb.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.done:
		if code != 0 {
			tb.Errorf("server exited with %d:\n%s", code, s.logs.String())
		}
	case <-time.After(60 * time.Second):
		tb.Errorf("server did not shut down:\n%s", s.logs.String())
	}
}

// call sends a JSON request with the test token and decodes the JSON answer.
func (s *testServer) call(tb testing.TB, method, path, body string) (int, map[string]any) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			tb.Fatalf("%s %s: %d with non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// httpDo sends an authorized JSON request and returns the raw response.
func httpDo(method, url, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

// runnerGit runs the real git CLI as a runner would, in a clean environment.
func runnerGit(tb testing.TB, dir string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+tb.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
