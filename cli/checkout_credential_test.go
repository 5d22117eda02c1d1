package cli

import (
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCredentialServer: the real `git credential fill` gets the token from
// the socket for the fetch URL's protocol and host, and nothing for any
// other; the socket's directory is gone after Close.
func TestCredentialServer(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:4242/git/group/app.git")
	s, err := startCredentialServer(u, "the-token")
	if err != nil {
		t.Fatal(err)
	}
	fill := func(input string) (string, error) {
		cmd := exec.Command("git", "-c", "credential.helper=", "-c", "credential.helper="+s.helper(), "credential", "fill")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := fill("protocol=http\nhost=127.0.0.1:4242\npath=git/group/app.git\n\n")
	if err != nil || !strings.Contains(out, "password=the-token\n") || !strings.Contains(out, "username="+credentialUser) {
		t.Fatalf("fill for the fetch host: %v\n%s", err, out)
	}
	for _, other := range []string{"protocol=http\nhost=127.0.0.1:4343\n\n", "protocol=https\nhost=127.0.0.1:4242\n\n", "protocol=http\nhost=evil.example\n\n"} {
		if out, err := fill(other); err == nil || strings.Contains(out, "the-token") {
			t.Errorf("fill for %q answered: %v\n%s", other, err, out)
		}
	}
	dir := s.dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("socket directory left behind: %v", err)
	}
}

// TestClassify: git's own messages (LC_ALL=C, git 2.39) sorted the way a
// retry bot sorts them.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want failureClass
	}{
		{"fatal: couldn't find remote ref refs/pipelines/7\n", failureGone},
		{"fatal: Authentication failed for 'http://h/git/group/app.git/'\n", failureTokenRefused},
		{"fatal: unable to access 'http://h/git/a.git/': The requested URL returned error: 503\n", failureTransient},
		{"fatal: unable to access 'http://h/git/a.git/': The requested URL returned error: 429\n", failureTransient},
		{"error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\nfatal: expected flush after ref listing\n", failureTransient},
		{"fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server\n", failureTransient},
		{"error: RPC failed; curl 56 Recv failure: Connection reset by peer\nfatal: early EOF\n", failureTransient},
		{"fatal: unable to access 'http://nohost/x.git/': Could not resolve host: nohost\n", failureTransient},
		{"fatal: Unable to create '/w/.git/index.lock': File exists.\n", failureTransient},
		{"error: cannot lock ref 'refs/pipelines/7': Unable to create '/w/.git/refs/pipelines/7.lock': File exists.\n", failureTransient},
		{"fatal: unable to access 'http://h/git/a.git/': The requested URL returned error: 403\n", failurePermanent},
		{"fatal: unable to access 'http://h/git/a.git/': The requested URL returned error: 404\n", failurePermanent},
		{"fatal: not a git repository (or any of the parent directories): .git\n", failurePermanent},
		{"fatal: could not read Username for 'http://h': terminal prompts disabled\n", failurePermanent},
	} {
		if got, _ := classify(tc.out); got != tc.want {
			t.Errorf("classify(%q) = %d, want %d", tc.out, got, tc.want)
		}
	}
}
