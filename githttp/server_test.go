package githttp

import (
	"bufio"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

const apiToken = "githttp-test-token-0123456789"

type fixture struct {
	server *Server
	url    string // the repository's fetch URL
	git    *testdata.MergeRequestProject
	base   string // the server's URL
	pins   *refstest.Fixture
	signer *FetchSigner
}

// newFixture serves group/app (testdata.NewMergeRequestProject) over a
// Server alone, on the pin service of refstest (real git, a real
// redis-server); gitBinary runs http-backend ("" : git).
func newFixture(t *testing.T, gitBinary string, configure ...func(*Config)) *fixture {
	t.Helper()
	return newFixtureOver(t, refstest.New(t), gitBinary, configure...)
}

// newFixtureOver is newFixture on a pin service the test made.
func newFixtureOver(t *testing.T, f *refstest.Fixture, gitBinary string, configure ...func(*Config)) *fixture {
	t.Helper()
	signer, err := NewFetchSigner([][]byte{[]byte("githttp-test-key-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Pins: f.Service,
		Credentials: func(r *http.Request) (Caller, error) {
			_, password, _ := r.BasicAuth()
			if password != apiToken {
				return Caller{Token: password}, nil
			}
			return Caller{MayFetch: func(refs.Project) bool { return true }}, nil
		},
		Signer: signer,
		Git:    gitBinary,
	}
	for _, c := range configure {
		c(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Serve(w, r); err != nil {
			status := http.StatusInternalServerError
			var refused *Error
			if errors.As(err, &refused) {
				status = refused.Status
			} else if refs.IsUnavailable(err) {
				status = http.StatusServiceUnavailable
			}
			http.Error(w, err.Error(), status)
		}
	}))
	t.Cleanup(srv.Close)
	return &fixture{server: s, url: "http://x:" + apiToken + "@" + strings.TrimPrefix(srv.URL, "http://") + "/git/group/app.git", git: f.Git,
		base: srv.URL, pins: f, signer: signer}
}

// runGit runs the real git client as a runner would.
func runGit(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFetchOverCGI: the real git client fetches through the Server alone,
// over protocol v0 and v2: the CGI header git http-backend writes is
// parsed and the pack streamed, so the commit arrives whole.
func TestFetchOverCGI(t *testing.T) {
	f := newFixture(t, "")
	for _, proto := range []string{"0", "2"} {
		work := t.TempDir()
		if out, err := runGit(t, work, "init", "-q", "--bare", "."); err != nil {
			t.Fatal(out)
		}
		if out, err := runGit(t, work, "-c", "protocol.version="+proto, "fetch", "--no-tags", f.url, "+refs/heads/main:refs/heads/main"); err != nil {
			t.Fatalf("fetch over protocol %s: %v\n%s", proto, err, out)
		}
		if out, err := runGit(t, work, "fsck", "--connectivity-only", f.git.Second); err != nil {
			t.Fatalf("protocol %s: the fetched history is not whole: %v\n%s", proto, err, out)
		}
	}
}

// TestBackendEndsAtTimeout: a git http-backend that hangs (here one that
// ignores SIGTERM, with a child of its own that does not) is ended at the
// Server's Timeout like every git process: SIGTERM to its process group,
// SIGKILL after the grace; the request answers 503 (retry) and leaves no
// process behind.
func TestBackendEndsAtTimeout(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	hanging := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\nsleep 1000 &\necho $! >> " + pids + "\necho $$ >> " + pids + "\ntrap '' TERM\nexec sleep 1000\n"
	if err := os.WriteFile(hanging, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, hanging)
	f.server.git.Timeout = time.Second // long enough for a loaded machine to start the script
	f.server.git.KillGrace = 200 * time.Millisecond

	req := httptest.NewRequest("GET", "/git/group/app.git/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("x", apiToken)
	start := time.Now()
	err := f.server.Serve(httptest.NewRecorder(), req)
	took := time.Since(start)
	if !refs.IsUnavailable(err) {
		t.Fatalf("a hung http-backend answered %v, want an unavailable error", err)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("answered after %v, want the timeout (1s) plus the grace", took)
	}
	raw, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	started := strings.Fields(string(raw))
	if len(started) != 2 {
		t.Fatalf("pids %q, want the child's and http-backend's", started)
	}
	for _, p := range started {
		pid, _ := strconv.Atoi(p)
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d outlived the request", pid)
		}
	}
}

// alive reports whether pid runs: it exists and is not a zombie (an
// orphan ended but not yet reaped by init).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	_, after, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(after, "Z")
}

// TestReadCGIHeader: the status line (none: 200) and the fields of a CGI
// header block; a block that is not one is an error.
func TestReadCGIHeader(t *testing.T) {
	read := func(s string) (int, http.Header, string, error) {
		r := bufio.NewReader(strings.NewReader(s))
		status, h, err := readCGIHeader(r)
		rest, _ := r.ReadString(0)
		return status, h, rest, err
	}
	status, h, rest, err := read("Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\r\n001e# service=git-upload-pack\n")
	if err != nil || status != 200 || h.Get("Content-Type") != "application/x-git-upload-pack-advertisement" || rest != "001e# service=git-upload-pack\n" {
		t.Fatalf("= %d %v %q %v", status, h, rest, err)
	}
	status, h, _, err = read("Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\n")
	if err != nil || status != 403 || h.Get("Status") != "" {
		t.Fatalf("= %d %v %v, want 403 and no Status field", status, h, err)
	}
	for _, bad := range []string{"", "Content-Type: text/plain\r\n", "Status: abc\r\n\r\n", "no colon\r\n\r\n"} {
		if _, _, _, err := read(bad); err == nil {
			t.Errorf("%q read as a header block", bad)
		}
	}
}
