package systest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// generatedToken is what a server without --tokens prints of its API
// token: the token itself when it generated it, else only where it is.
var generatedToken = regexp.MustCompile(`API token(?: \(generated, also in [^)]+\): (\S+)|: kept in (\S+))`)

// printedToken is the API token a server without --tokens uses: the one
// it printed, or the one in the file it named.
func printedToken(t *testing.T, s *server) string {
	t.Helper()
	m := generatedToken.FindStringSubmatch(s.Stdout.String())
	if m == nil {
		t.Fatalf("no API token printed: %q", s.Stdout.String())
	}
	if m[1] != "" {
		return m[1]
	}
	raw, err := os.ReadFile(m[2])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// pinWith pins group/app's pipeline id at sha with token and answers the
// pin's fetch token.
func pinWith(t *testing.T, base, token string, id int, sha string) string {
	t.Helper()
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s%s/pipelines/%d/ref", base, apiBase, id), strings.NewReader(`{"sha":"`+sha+`"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var pin struct {
		FetchToken string `json:"fetch_token"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &pin) != nil || pin.FetchToken == "" {
		t.Fatalf("pin %d with the generated token = %d %s", id, resp.StatusCode, raw)
	}
	return pin.FetchToken
}

// TestReplicasShareGeneratedSecrets: two `serve --role all` on one repos
// root and one Redis, given neither --tokens nor --fetch-token-keys, agree
// on the API token and the fetch-token key they generate (each kept in a
// 0600 file beside the repos root), so a fetch token either issues opens
// the pin at the other; and a restart keeps the token people were given.
func TestReplicasShareGeneratedSecrets(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	a := startServerTokens(t, "--repos", p.root, "--redis", r.URL(), "--role", "all")
	b := startServerTokens(t, "--repos", p.root, "--redis", r.URL(), "--role", "all")
	token := printedToken(t, a)
	if other := printedToken(t, b); other != token {
		t.Fatalf("replica a uses API token %s…, replica b %s…: one of them answers 401", token[:6], other[:6])
	}
	dir := filepath.Dir(p.root)
	for _, name := range []string{"api-token", "fetch-token-key"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want a 0600 file", name, err, st)
		}
	}
	// Every fetch token either replica issues opens its pin at both.
	for i, issuer := range []*server{a, b} {
		id := 40 + i
		fetchToken := pinWith(t, issuer.Base, token, id, p.c1)
		for j, at := range []*server{a, b} {
			url := strings.Replace(at.Base, "http://", "http://job:"+fetchToken+"@", 1) + "/git/group/app.git"
			out, err := testdata.RunnerGit(t, t.TempDir(), "ls-remote", url)
			if err != nil || !strings.Contains(out, fmt.Sprintf("%s\trefs/pipelines/%d", p.c1, id)) {
				t.Errorf("fetch token of replica %d at replica %d: %v\n%s", i, j, err, out)
			}
		}
	}
	// A restart keeps the token (and says where it came from).
	a.Stop(t)
	again := startServerTokens(t, "--repos", p.root, "--redis", r.URL(), "--role", "all")
	if got := printedToken(t, again); got != token || !strings.Contains(again.Stdout.String(), "kept in") || strings.Contains(again.Stdout.String(), token) {
		t.Fatalf("after a restart: %q, want the same token kept, and not printed again", again.Stdout.String())
	}
	pinWith(t, again.Base, token, 50, p.c2)
}

// TestGeneratedSecretReadableByOthers: a kept token file that others may
// read, that belongs to another user, that is a symbolic link (to a file
// of this user's) or a FIFO is refused with one line naming it, neither
// used nor printed, and at once (a FIFO does not hold the start).
func TestGeneratedSecretReadableByOthers(t *testing.T) {
	const secret = "a-token-chosen-by-someone-else-0123"
	cases := []struct {
		name, want string
		plant      func(t *testing.T, path string)
	}{
		{"mode 0644", "api-token has mode 0644", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(secret+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"symbolic link", "api-token is a symbolic link", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "private")
			if err := os.WriteFile(target, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"FIFO", "api-token is not a regular file", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"another user's", "belongs to user 65534", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root")
			}
			if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t)
			tc.plant(t, filepath.Join(filepath.Dir(p.root), "api-token"))
			// Bounded: a serve that takes the file starts serving and never ends.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, testdata.RefkeeperBinary(t), "serve", "--repos", p.root, "--listen", "127.0.0.1:0")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), secret) {
				t.Fatalf("serve with an api-token of %s: %v, want exit 1 saying %q, without its token\n%s", tc.name, err, tc.want, out)
			}
		})
	}
}
