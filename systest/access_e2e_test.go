package systest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestAccessFileAtStart: a bad --access file stops serve with status 2 and
// one line naming the file and what is wrong; nothing is served.
func TestAccessFileAtStart(t *testing.T) {
	bin := testdata.RefkeeperBinary(t)
	dir := t.TempDir()
	good := `{"sha256": "` + sha256Hex("x-0123456789abcdef") + `", "name": "ci", "role": "pipeline", "projects": ["group/*"]}`
	cases := map[string]string{
		"unknown field": `{"tokens": [], "users": []}`,
		"bad role":      `{"tokens": [{"name": "ci", "sha256": "` + sha256Hex("x") + `", "role": "owner", "projects": ["*"]}]}`,
		"bad sha256":    `{"tokens": [{"name": "ci", "sha256": "abc", "role": "read", "projects": ["*"]}]}`,
		"bad pattern":   `{"tokens": [{"name": "ci", "sha256": "` + sha256Hex("x") + `", "role": "read", "projects": ["../*"]}]}`,
		"bad kind":      `{"tokens": [` + good + `], "identities": [{"issuer": "https://gitlab.example.com", "audience": "refkeeper", "kind": "jenkins", "projects": ["*"]}]}`,
		"http issuer":   `{"identities": [{"issuer": "http://gitlab.example.com", "audience": "refkeeper", "kind": "gitlab", "projects": ["*"]}]}`,
		"bad hook host": `{"hooks": [{"host": "bitbucket", "secret": "s3cret-0123456789"}]}`,
		"empty secret":  `{"hooks": [{"host": "gitlab", "secret": ""}]}`,
		"not JSON":      `{"tokens": [`,
		"missing file":  "",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
			if body != "" {
				if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bin, "serve", "--tokens", testToken, "--repos", t.TempDir(), "--listen", testdata.FreeAddr(t), "--access", path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("serve with a bad access file: %v, want exit status 2\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "access") || !strings.Contains(lines[0], path) {
				t.Fatalf("output is not one line naming --access and the file:\n%s", out)
			}
			if strings.Contains(string(out), "s3cret") {
				t.Fatalf("the line shows a secret: %s", out)
			}
		})
	}
}

// TestPipelineTokenOnTwoReplicas: two `serve --role all` processes share
// Redis and the repos root, each reading the same access file: a pipeline
// token of group/* pins on one and finishes on the other, and is refused
// (403) on a project outside its scope and on GC at both.
func TestPipelineTokenOnTwoReplicas(t *testing.T) {
	p := newProject(t)
	other := testdata.NewBareRepo(t, p.root, "other/lib")
	otherSHA := other.Commit(t, "main", map[string]string{"lib.txt": "lib\n"}, "lib")
	r := testdata.StartRedis(t)
	const pipeline = "pipeline-token-of-group-0123456789"
	path := filepath.Join(t.TempDir(), "access.json")
	body := `{"tokens": [{"name": "orchestrator", "sha256": "` + sha256Hex(pipeline) + `", "role": "pipeline", "projects": ["group/*"]}]}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	key := "--fetch-token-keys=shared-key-0123456789"
	a := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "all", "--access", path, key)
	b := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "all", "--access", path, key)
	send := func(s *server, method, path, body string) int {
		req, err := http.NewRequest(method, s.Base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+pipeline)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send(a, "PUT", apiBase+"/pipelines/3/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin with the pipeline token on replica a = %d, want 201", code)
	}
	if code := send(b, "POST", apiBase+"/pipelines/3/finish", ""); code != 200 {
		t.Fatalf("finish with the pipeline token on replica b = %d, want 200", code)
	}
	for _, s := range []*server{a, b} {
		if code := send(s, "PUT", "/api/v1/projects/other%2Flib/pipelines/3/ref", `{"sha":"`+otherSHA+`"}`); code != 403 {
			t.Errorf("pin of other/lib with group/*'s token = %d, want 403", code)
		}
		if code := send(s, "POST", "/api/v1/gc", ""); code != 403 {
			t.Errorf("gc with a pipeline token = %d, want 403", code)
		}
	}
	if refs := other.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Errorf("other/lib got pipeline refs %v", refs)
	}
	code, pin := a.call(t, "GET", apiBase+"/pipelines/3/ref", "")
	if code != 200 || pin["state"] != "finished" {
		t.Errorf("pin after the finish on b = %d %v", code, pin)
	}
}
