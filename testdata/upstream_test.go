package testdata

import (
	"context"
	"encoding/base64"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lsRemote runs the real git client against the upstream with the given
// password (sent as a basic auth header, so no credential helper is asked).
func lsRemote(ctx context.Context, u *Upstream, password string, refs ...string) (string, error) {
	auth := base64.StdEncoding.EncodeToString([]byte(UpstreamUser + ":" + password))
	args := append([]string{"-c", "http.extraHeader=Authorization: Basic " + auth, "-c", "protocol.version=2",
		"ls-remote", u.URL()}, refs...)
	cmd := exec.CommandContext(ctx, "git", args...)
	// git's remote helper outlives a killed git and holds the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = []string{"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C", "PATH=" + pathEnv()}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func pathEnv() string {
	p, _ := exec.LookPath("git")
	return p[:strings.LastIndex(p, "/")] + ":/usr/bin:/bin"
}

func TestUpstreamServesHostShapedRefs(t *testing.T) {
	u := StartUpstream(t)
	out, err := lsRemote(context.Background(), u, UpstreamPassword)
	if err != nil {
		t.Fatalf("ls-remote: %v\n%s", err, out)
	}
	for ref, sha := range map[string]string{
		"refs/heads/main":             u.Second,
		"refs/heads/feature":          u.Head,
		"refs/pull/1/head":            u.Head,
		"refs/pull/1/merge":           u.Merge,
		"refs/merge-requests/1/head":  u.Head,
		"refs/merge-requests/1/merge": u.Merge,
	} {
		if !strings.Contains(out, sha+"\t"+ref+"\n") {
			t.Errorf("ls-remote lacks %s at %s:\n%s", ref, sha, out)
		}
	}
	if got := u.Fetches(); got != 1 {
		t.Errorf("Fetches() = %d after one ls-remote, want 1", got)
	}
	if got := u.UploadPackPosts(); got < 1 {
		t.Errorf("UploadPackPosts() = %d after a v2 ls-remote, want at least 1 (ls-refs)", got)
	}
}

func TestUpstreamRefusesWrongPasswordAndChangesIt(t *testing.T) {
	u := StartUpstream(t)
	if out, err := lsRemote(context.Background(), u, "wrong"); err == nil {
		t.Fatalf("ls-remote with a wrong password succeeded:\n%s", out)
	} else if !strings.Contains(out, "Authentication failed") && !strings.Contains(out, "could not read Username") {
		t.Errorf("wrong password: git said %q, want an authentication failure", out)
	}
	if u.Refused() == 0 || u.Fetches() != 0 {
		t.Errorf("Refused()=%d Fetches()=%d, want >0 and 0", u.Refused(), u.Fetches())
	}
	u.SetPassword("rotated-password")
	if out, err := lsRemote(context.Background(), u, UpstreamPassword); err == nil {
		t.Fatalf("the old password still works after SetPassword:\n%s", out)
	}
	if out, err := lsRemote(context.Background(), u, "rotated-password"); err != nil {
		t.Fatalf("the new password: %v\n%s", err, out)
	}
}

func TestUpstreamStallsUntilReleased(t *testing.T) {
	u := StartUpstream(t)
	u.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if out, err := lsRemote(ctx, u, UpstreamPassword); err == nil {
		t.Fatalf("ls-remote against a stalled upstream answered:\n%s", out)
	}
	if got := u.Fetches(); got != 0 {
		t.Errorf("a stalled upstream served %d fetches", got)
	}
	done := make(chan error, 1)
	go func() {
		_, err := lsRemote(context.Background(), u, UpstreamPassword)
		done <- err
	}()
	u.Release()
	if err := <-done; err != nil {
		t.Fatalf("ls-remote after Release: %v", err)
	}
}

func TestUpstreamStopRefusesConnections(t *testing.T) {
	u := StartUpstream(t)
	u.Stop()
	out, err := lsRemote(context.Background(), u, UpstreamPassword)
	if err == nil {
		t.Fatalf("ls-remote against a stopped upstream succeeded:\n%s", out)
	}
	if !strings.Contains(out, "onnect") { // "Failed to connect", "Connection refused"
		t.Errorf("stopped upstream: git said %q, want a connection failure", out)
	}
	u.Stop() // twice is fine
}
