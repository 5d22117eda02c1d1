package systest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// writeAccess writes body as an --access file (mode 0600, as serve wants
// it) and answers its path.
func writeAccess(tb testing.TB, body string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "access.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// accessReplicas is group/app and other/lib (one commit) on one repos root
// and one Redis, served by two `serve --role all` replicas that read the
// same --access file and share a fetch-token key.
type accessReplicas struct {
	p        *project
	other    *testdata.Repo
	otherSHA string
	a, b     *server
}

// startAccessReplicas starts accessReplicas with access as the --access
// file: its tokens, or identities whose issuers (testdata.StartIssuer) the
// caller started before.
func startAccessReplicas(tb testing.TB, access string) *accessReplicas {
	tb.Helper()
	f := &accessReplicas{p: newProject(tb)}
	f.other = testdata.NewBareRepo(tb, f.p.root, "other/lib")
	f.otherSHA = f.other.Commit(tb, "main", map[string]string{"lib.txt": "lib\n"}, "lib")
	args := []string{"--repos", f.p.root, "--redis", testdata.StartRedis(tb).URL(), "--role", "all",
		"--access", writeAccess(tb, access), "--fetch-token-keys=shared-key-0123456789"}
	f.a, f.b = startServer(tb, args...), startServer(tb, args...)
	return f
}

// TestPipelineTokenOnTwoReplicas: two `serve --role all` processes share
// Redis and the repos root, each reading the same access file: a pipeline
// token of group/* pins on one and finishes on the other, and is refused
// (403) on a project outside its scope and on GC at both.
func TestPipelineTokenOnTwoReplicas(t *testing.T) {
	const pipeline = "pipeline-token-of-group-0123456789"
	f := startAccessReplicas(t, `{"tokens": [{"name": "orchestrator", "sha256": "`+sha256Hex(pipeline)+`", "role": "pipeline", "projects": ["group/*"]}]}`)
	p, other, otherSHA, a, b := f.p, f.other, f.otherSHA, f.a, f.b
	send := func(s *server, method, path, body string) int {
		t.Helper()
		code, _, _ := s.as(t, pipeline, method, path, body)
		return code
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
