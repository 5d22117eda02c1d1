package systest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// runnerDocs is the page that holds the runner snippets a user copies.
var runnerDocs = filepath.Join("..", "docs", "runners.md")

// readmeBlocks answers the fenced blocks of docs/runners.md that follow a
// line starting with marker, in order.
func readmeBlocks(tb testing.TB, marker string) []string {
	tb.Helper()
	raw, err := os.ReadFile(runnerDocs)
	if err != nil {
		tb.Fatal(err)
	}
	var blocks []string
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], marker) {
			continue
		}
		j := i + 1
		if j >= len(lines) || !strings.HasPrefix(lines[j], "```") {
			tb.Fatalf("%s line %d: %q is not followed by a fenced block", runnerDocs, i+1, lines[i])
		}
		var b []string
		for j++; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			b = append(b, lines[j])
		}
		blocks = append(blocks, strings.Join(b, "\n")+"\n")
		i = j
	}
	return blocks
}

// refkeeperLine is the `refkeeper checkout …` command of a CI snippet, as
// the runner's shell would run it.
func refkeeperLine(tb testing.TB, block string) string {
	tb.Helper()
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(strings.TrimPrefix(l, "- "), "run: ")
		if strings.HasPrefix(l, "refkeeper checkout ") {
			return l
		}
	}
	tb.Fatalf("no refkeeper checkout line in:\n%s", block)
	return ""
}

// pinEnv is what an orchestrator hands a job from the pin.
func pinEnv(pin map[string]any) map[string]string {
	return map[string]string{
		"REFKEEPER_FETCH_URL": fmt.Sprint(pin["fetch_url"]), "REFKEEPER_REFSPEC": fmt.Sprint(pin["refspec"]),
		"REFKEEPER_SHA": fmt.Sprint(pin["sha"]), "REFKEEPER_FETCH_TOKEN": fmt.Sprint(pin["fetch_token"]),
	}
}

// headOf answers the commit checked out in the work tree dir.
func headOf(tb testing.TB, dir string) string {
	tb.Helper()
	out, err := testdata.RunnerGit(tb, dir, "rev-parse", "HEAD")
	if err != nil {
		tb.Fatalf("rev-parse HEAD in %s: %v\n%s", dir, err, out)
	}
	return strings.TrimSpace(out)
}

// runShell runs script with bash, with the refkeeper binary first on PATH
// and env added to this process's environment, as a runner's shell would.
func runShell(tb testing.TB, dir, script string, env map[string]string) (string, error) {
	tb.Helper()
	bin := testdata.RefkeeperBinary(tb)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+tb.TempDir(), "GIT_CONFIG_NOSYSTEM=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestREADMERunnerSnippets runs the three runner snippets of docs/runners.md as far
// as this machine allows: the shell job whole, and the refkeeper line of the
// GitLab and GitHub snippets with the variables those runners set, the ID
// tokens the snippets ask their CI system for (from real issuers the
// server's access file trusts) and no API token.
func TestREADMERunnerSnippets(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	gl, gh := testdata.StartIssuer(t), testdata.StartIssuer(t)
	access := filepath.Join(t.TempDir(), "access.json")
	body := fmt.Sprintf(`{"identities": [
		{"issuer": %q, "audience": "refkeeper", "kind": "gitlab", "projects": ["group/*"]},
		{"issuer": %q, "audience": "refkeeper", "kind": "github", "projects": ["group/*"]}]}`, gl.URL, gh.URL)
	if err := os.WriteFile(access, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--access", access)
	blocks := readmeBlocks(t, "<!-- checkout_readme_test.go runs")
	if len(blocks) != 3 {
		t.Fatalf("%d marked blocks in %s, want 3 (shell, GitLab, GitHub)", len(blocks), runnerDocs)
	}

	t.Run("shell job", func(t *testing.T) {
		code, pin := srv.call(t, "PUT", apiBase+"/pipelines/41/ref", `{"sha":"`+p.c1+`"}`)
		if code != 201 {
			t.Fatalf("pin = %d %v", code, pin)
		}
		dir := t.TempDir()
		out, err := runShell(t, dir, blocks[0], pinEnv(pin))
		if err != nil || !strings.Contains(out, "testing "+p.c1) || headOf(t, filepath.Join(dir, "work")) != p.c1 {
			t.Fatalf("shell job: %v\n%s", err, out)
		}
		t.Logf("shell job printed:\n%s", out)
		if code, body := srv.call(t, "DELETE", apiBase+"/pipelines/41/ref", ""); code != 204 {
			t.Fatalf("delete = %d %v", code, body)
		}
		out, err = runShell(t, t.TempDir(), blocks[0], pinEnv(pin))
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitGone || !strings.Contains(out, "re-pin before retrying this job") {
			t.Fatalf("shell job after DELETE: %v\n%s", err, out)
		}
	})

	for i, tc := range []struct {
		name string
		env  func(dir string, id int64) map[string]string
		dir  func(env map[string]string) string
	}{
		{"GitLab", func(dir string, id int64) map[string]string {
			return map[string]string{"CI_PROJECT_DIR": filepath.Join(dir, "builds", "group", "app"),
				"CI_PROJECT_PATH": "group/app", "CI_PIPELINE_ID": strconv.FormatInt(id, 10)}
		}, func(env map[string]string) string { return env["CI_PROJECT_DIR"] }},
		{"GitHub", func(dir string, id int64) map[string]string {
			return map[string]string{"GITHUB_WORKSPACE": filepath.Join(dir, "_work", "app", "app"),
				"GITHUB_REPOSITORY": "group/app", "GITHUB_RUN_ID": strconv.FormatInt(id, 10)}
		}, func(env map[string]string) string { return env["GITHUB_WORKSPACE"] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := int64(50 + i)
			if code, pin := srv.call(t, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", apiBase, id), `{"merge_request_iid":12}`); code != 201 {
				t.Fatalf("pin = %d %v", code, pin)
			}
			env := tc.env(t.TempDir(), id)
			env["REFKEEPER_URL"] = srv.Base
			// What the snippet asks its CI system for, the runner sets.
			block := blocks[1+i]
			if strings.Contains(block, "REFKEEPER_TOKEN") {
				t.Fatalf("the %s snippet gives the job an API token:\n%s", tc.name, block)
			}
			if strings.Contains(block, "id_tokens:") && strings.Contains(block, "REFKEEPER_ID_TOKEN:") {
				env["REFKEEPER_ID_TOKEN"] = gl.Token(t, testdata.GitLabClaims("group/app", id, testdata.IssuerAudience))
			}
			if strings.Contains(block, "id-token: write") {
				gh.SetActionsJob("group/app", id)
				env["ACTIONS_ID_TOKEN_REQUEST_URL"] = gh.ActionsRequestURL()
				env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = testdata.IssuerActionsRequestToken
			}
			// The job's own commit: the merge request pipeline's (the pin).
			env["CI_COMMIT_SHA"] = p.merge
			if strings.Contains(block, "REFKEEPER_EXPECT_SHA:") {
				env["REFKEEPER_EXPECT_SHA"] = p.merge
			}
			line := refkeeperLine(t, block)
			out, err := runShell(t, t.TempDir(), line, env)
			if err != nil || headOf(t, tc.dir(env)) != p.merge {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
			t.Logf("%s printed:\n%s", line, out)
		})
	}
}
