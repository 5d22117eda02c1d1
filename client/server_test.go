package client_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// apiToken is the API token of every server these tests start.
const apiToken = "client-test-token-0123456789"

// The refkeeper binary, built once per test run: the client is tested
// against the real server process, as a user's program meets it.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func refkeeperBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "refkeeper-client-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "refkeeper")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/refkeeper/refkeeper/cmd/refkeeper").CombinedOutput()
		if err != nil {
			buildErr = &buildFailure{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		tb.Fatalf("building refkeeper: %v", buildErr)
	}
	return binPath
}

type buildFailure struct {
	out string
	err error
}

func (e *buildFailure) Error() string { return e.err.Error() + "\n" + e.out }

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is `refkeeper serve` as a separate process.
type server struct {
	base string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
}

var servingLine = regexp.MustCompile(`"msg":"refkeeper serving","addr":"([^"]+)"`)

// startServer runs `refkeeper serve` with the given flags, listening on
// listen (empty: a port the kernel picks), and waits until it serves.
// Cleanup stops it with SIGTERM.
func startServer(tb testing.TB, listen string, args ...string) *server {
	tb.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	s := &server{logs: &lockedBuffer{}, done: make(chan struct{})}
	full := append([]string{"serve", "--listen", listen, "--tokens", apiToken}, args...)
	s.cmd = exec.Command(refkeeperBinary(tb), full...)
	s.cmd.Stderr = s.logs
	s.cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(s.logs.String()); m != nil {
			s.base = "http://" + m[1]
			break
		}
		select {
		case <-s.done:
			tb.Fatalf("server exited before serving:\n%s", s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server did not start:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(60 * time.Second):
			_ = s.cmd.Process.Kill()
			tb.Errorf("server ignored SIGTERM:\n%s", s.logs.String())
		}
	})
	return s
}

// freeAddr is a loopback address nothing listens on (the kernel's pick,
// released again).
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rawGet fetches path with the API token and answers the body as sent.
func rawGet(tb testing.TB, base, path string) []byte {
	tb.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
