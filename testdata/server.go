package testdata

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is `refkeeper serve` as a process of its own, run from the binary
// RefkeeperBinary builds. A test sees it as runners, orchestrators and
// operators do: through its address, its log and output, and its process
// (signals, /proc).
type Server struct {
	Base   string        // http://host:port
	Logs   *LockedBuffer // its stderr, where the log goes
	Stdout *LockedBuffer // its stdout (a generated API token is printed there)
	Cmd    *exec.Cmd

	exited chan struct{} // closed once the process has ended

	mu       sync.Mutex
	expected bool // the test ended it (Kill, Signal, Stop): no failure
}

// servingLine is the log line that says where serve listens.
var servingLine = regexp.MustCompile(`"msg":"refkeeper serving","addr":"([^"]+)"`)

// serverStartTimeout bounds the wait for a server to serve; building the
// binary is not part of it.
const serverStartTimeout = 30 * time.Second

// StartServer runs `refkeeper serve` with args and waits until it serves.
// Without --listen in args it listens on a port the kernel picks, read from
// its "refkeeper serving" log line, or, when a --log-level of warn or error
// hides that line, on FreeAddr, and then /healthz says when it serves. Its
// environment is this process's without REFKEEPER_* variables (args say
// everything, as with the in-process runs of main's tests), plus
// GIT_CONFIG_NOSYSTEM=1. Cleanup stops it with SIGTERM and fails the test
// unless it exits 0, or unless the test ended it.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin := RefkeeperBinary(tb)
	listen, chosen := flagValue(args, "listen")
	if !chosen {
		listen = "127.0.0.1:0"
		if level, _ := flagValue(args, "log-level"); level == "warn" || level == "error" {
			listen = FreeAddr(tb)
		}
		args = append([]string{"--listen", listen}, args...)
	}
	s := &Server{Logs: &LockedBuffer{}, Stdout: &LockedBuffer{}, exited: make(chan struct{})}
	s.Cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	s.Cmd.Stdout, s.Cmd.Stderr = s.Stdout, s.Logs
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REFKEEPER_") {
			s.Cmd.Env = append(s.Cmd.Env, kv)
		}
	}
	s.Cmd.Env = append(s.Cmd.Env, "GIT_CONFIG_NOSYSTEM=1")
	if err := s.Cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		_ = s.Cmd.Wait()
		close(s.exited)
	}()
	tb.Cleanup(func() { s.Stop(tb) })

	port0 := strings.HasSuffix(listen, ":0")
	deadline := time.Now().Add(serverStartTimeout)
	for {
		if port0 {
			if m := servingLine.FindStringSubmatch(s.Logs.String()); m != nil {
				s.Base = "http://" + m[1]
				return s
			}
		} else if resp, err := http.Get("http://" + listen + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.Base = "http://" + listen
				return s
			}
		}
		select {
		case <-s.exited:
			tb.Fatalf("refkeeper serve exited with %d before serving:\n%s", s.ExitCode(), s.Logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("refkeeper serve did not serve within %v:\n%s", serverStartTimeout, s.Logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flagValue answers the value of the last --name or -name in args, in
// either spelling (--name value, --name=value), as the flag package reads
// them.
func flagValue(args []string, name string) (string, bool) {
	value, found := "", false
	for i := 0; i < len(args); i++ {
		a := strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok && a != args[i] {
			value, found = v, true
		} else if a == name && a != args[i] && i+1 < len(args) {
			value, found = args[i+1], true
			i++
		}
	}
	return value, found
}

// Exited is closed once the process has ended.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitCode waits for the process to end and answers its exit status, -1
// when a signal ended it.
func (s *Server) ExitCode() int {
	<-s.exited
	return s.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process; its end is then the test's to check.
func (s *Server) Signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	s.mu.Lock()
	s.expected = true
	s.mu.Unlock()
	if err := s.Cmd.Process.Signal(sig); err != nil {
		select {
		case <-s.exited: // it ended already
		default:
			tb.Fatalf("signal %v: %v", sig, err)
		}
	}
}

// Kill is kill -9 and waits for the end: no shutdown, no cleanup, locks and
// tasks left as they are.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.Signal(tb, syscall.SIGKILL)
	<-s.exited
}

// Stop ends the process as an orchestrator does, with SIGTERM, and fails
// the test unless it exits 0 within a minute. A process the test signalled
// itself is only waited for; one that ended by itself is a failure.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	expected := s.expected
	s.expected = true
	s.mu.Unlock()
	select {
	case <-s.exited:
		if !expected {
			tb.Errorf("refkeeper serve had exited by itself with %d:\n%s", s.ExitCode(), s.Logs.String())
		}
		return
	default:
	}
	if !expected {
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.exited:
		// After the test's own signal the test judges the exit status.
		if code := s.ExitCode(); code != 0 && !expected {
			tb.Errorf("refkeeper serve exited with %d after SIGTERM:\n%s", code, s.Logs.String())
		}
	case <-time.After(time.Minute):
		_ = s.Cmd.Process.Kill()
		<-s.exited
		tb.Errorf("refkeeper serve ignored SIGTERM for a minute:\n%s", s.Logs.String())
	}
}

// FreeAddr answers a loopback address nothing listens on: the kernel's
// pick, released again.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// RunnerGit runs the git CLI in dir as a CI runner would: its own HOME, no
// system config, no prompts, git's messages in English. It answers git's
// output, stdout and stderr together.
func RunnerGit(tb testing.TB, dir string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+tb.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// HeadOf answers the commit checked out in the work tree dir, read with
// RunnerGit; a git that fails fails the test.
func HeadOf(tb testing.TB, dir string) string {
	tb.Helper()
	out, err := RunnerGit(tb, dir, "rev-parse", "HEAD")
	if err != nil {
		tb.Fatalf("rev-parse HEAD in %s: %v\n%s", dir, err, out)
	}
	return strings.TrimSpace(out)
}

// WaitFor polls cond every 50 ms until it holds, and fails the test when
// timeout passes first. It is for what happens in another process, which
// the test cannot be told of: a ref a background task deletes, a clone that
// ends.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
