package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// processServer is `refkeeper serve` as a separate process.
type processServer struct {
	testServer
	cmd *exec.Cmd
}

// startProcess runs the binary with the given flags and the test token on a
// free port and waits until it serves. Cleanup stops it with SIGTERM unless
// the test killed it.
func startProcess(tb testing.TB, args ...string) *processServer {
	tb.Helper()
	return startProcessTokens(tb, append([]string{"--tokens", testToken}, args...)...)
}

// startProcessTokens is startProcess without the test token: args say
// where the tokens come from.
func startProcessTokens(tb testing.TB, args ...string) *processServer {
	tb.Helper()
	bin := testdata.RefkeeperBinary(tb)
	logs := &syncBuffer{}
	// With a quiet log level the "serving" line never comes: then listen on
	// a port chosen here and wait for /healthz instead.
	listen := "127.0.0.1:0"
	quiet := slices.Contains(args, "--log-level")
	if quiet {
		listen = freeAddr(tb)
	}
	full := append([]string{"serve", "--listen", listen}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Stderr = logs
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &processServer{testServer: testServer{logs: logs, done: make(chan int, 1)}, cmd: cmd}
	go func() {
		_ = cmd.Wait()
		s.done <- cmd.ProcessState.ExitCode()
	}()
	if quiet {
		s.base = "http://" + listen
		waitFor(tb, "the process to serve", 20*time.Second, func() bool {
			resp, err := http.Get(s.base + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	} else {
		s.waitServing(tb)
	}
	tb.Cleanup(func() { s.terminate(tb) })
	return s
}

// freeAddr finds a free loopback port (the kernel's, released again).
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *processServer) waitServing(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := servingAddr.FindStringSubmatch(s.logs.String()); m != nil {
			s.base = "http://" + m[1]
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("process did not start:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is kill -9: no shutdown, no cleanup, locks and tasks left as they are.
func (s *processServer) kill(tb testing.TB) {
	tb.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.done <- -1 // terminate sees it is gone
}

func (s *processServer) terminate(tb testing.TB) {
	tb.Helper()
	select {
	case code := <-s.done:
		if code >= 0 {
			tb.Errorf("process had exited with %d:\n%s", code, s.logs.String())
		}
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case code := <-s.done:
		if code != 0 {
			tb.Errorf("process exited with %d after SIGTERM:\n%s", code, s.logs.String())
		}
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		tb.Errorf("process ignored SIGTERM:\n%s", s.logs.String())
	}
}
