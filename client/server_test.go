package client_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// apiToken is the API token of every server these tests start.
const apiToken = "client-test-token-0123456789"

// server is `refkeeper serve` as a separate process.
type server struct {
	base string
	cmd  *exec.Cmd
	logs *testdata.LockedBuffer
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
	s := &server{logs: &testdata.LockedBuffer{}, done: make(chan struct{})}
	full := append([]string{"serve", "--listen", listen, "--tokens", apiToken}, args...)
	s.cmd = exec.Command(testdata.RefkeeperBinary(tb), full...)
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
