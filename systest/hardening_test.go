package systest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// readHeaderTimeout is how long the server waits for a request's headers
// (README: "request headers must arrive within 10 s").
const readHeaderTimeout = 10 * time.Second

// TestSlowClientIsCut: a client that sends half a request header and stalls
// is disconnected once the read-header timeout passes.
func TestSlowClientIsCut(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api")
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 20*time.Second))
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	if took := time.Since(start); err != nil || took > readHeaderTimeout+10*time.Second {
		t.Fatalf("stalled client held the connection for %v (err %v)", took, err)
	}
}

// TestGeneratedToken: without --tokens one token is generated, printed once,
// written next to the repos root readable by the owner only, and it works.
func TestGeneratedToken(t *testing.T) {
	dir := t.TempDir()
	repos := filepath.Join(dir, "repos")
	r := testdata.StartRedis(t)
	srv := startServerTokens(t, "--repos", repos, "--redis", r.URL(), "--role", "api")
	path := filepath.Join(dir, "api-token")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", info.Mode().Perm())
	}
	token, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(token))
	printed := srv.Stdout.String()
	if len(tok) < 32 || strings.Count(printed, tok) != 1 {
		t.Fatalf("token %q printed %d times in %q", tok, strings.Count(printed, tok), printed)
	}
	if strings.Contains(srv.Logs.String(), tok) {
		t.Fatal("the token reached the log")
	}
	// It opens the API.
	req, _ := http.NewRequest("GET", srv.Base+"/api/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := decodeJSON(resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/projects with the generated token: %d %v, want 200", resp.StatusCode, body)
	}
}

// TestSecretsFromFiles: API tokens from --tokens-file open the API, keys
// from --fetch-token-keys-file sign fetch tokens that another replica with
// the same file accepts, and neither appears in a process's argv,
// environment or log.
func TestSecretsFromFiles(t *testing.T) {
	const first, second = "file-token-0123456789abcdef", "file-token-fedcba9876543210"
	const key = "file-key-0123456789abcdef"
	p := newProject(t)
	r := testdata.StartRedis(t)
	dir := t.TempDir()
	tokens, keys := filepath.Join(dir, "tokens"), filepath.Join(dir, "keys")
	if err := os.WriteFile(tokens, []byte("# orchestrators\n"+first+"\n"+second+" # rotating out\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--repos", p.root, "--redis", r.URL(), "--role", "api", "--tokens-file", tokens, "--fetch-token-keys-file", keys}
	a, b := startServerTokens(t, flags...), startServerTokens(t, flags...)
	call := func(srv *server, token, method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.Base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, decodeJSON(resp)
	}
	for _, tt := range []struct {
		token string
		want  int
	}{{first, 404}, {second, 404}, {testToken, 401}, {"file-token-0123456789abcdeX", 401}} {
		if code, _ := call(a, tt.token, "GET", apiBase+"/pipelines/1/ref", ""); code != tt.want {
			t.Errorf("token %q: %d, want %d (404 pin_not_found: the token was taken)", tt.token, code, tt.want)
		}
	}
	code, pin := call(a, second, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c1+`"}`)
	if code != 201 {
		t.Fatalf("pin = %d %v", code, pin)
	}
	url := strings.Replace(b.Base, "http://", "http://job:"+pin["fetch_token"].(string)+"@", 1) + "/git/group/app.git"
	if out, err := testdata.RunnerGit(t, t.TempDir(), "ls-remote", url); err != nil || !strings.Contains(out, p.c1+"\trefs/pipelines/1") {
		t.Fatalf("a fetch token of replica a at replica b: %v\n%s", err, out)
	}
	for _, srv := range []*server{a, b} {
		if !strings.Contains(srv.Logs.String(), `"tokens_file":"`+tokens+`","fetch_token_keys_file":"`+keys+`"`) {
			t.Errorf("the start-up log does not name the secret files:\n%s", srv.Logs.String())
		}
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", srv.Cmd.Process.Pid, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{first, second, key} {
				if strings.Contains(string(data), secret) {
					t.Fatalf("a secret is in the process's %s", f)
				}
			}
		}
		for _, secret := range []string{first, second, key} {
			if strings.Contains(srv.Logs.String(), secret) {
				t.Fatal("a secret reached the log")
			}
		}
	}
}
