package systest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// pinEnv is what an orchestrator hands a job from the pin.
func pinEnv(pin map[string]any) map[string]string {
	return map[string]string{
		"REFKEEPER_FETCH_URL": fmt.Sprint(pin["fetch_url"]), "REFKEEPER_REFSPEC": fmt.Sprint(pin["refspec"]),
		"REFKEEPER_SHA": fmt.Sprint(pin["sha"]), "REFKEEPER_FETCH_TOKEN": fmt.Sprint(pin["fetch_token"]),
	}
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

// TestREADMERunnerSnippets runs the shell job of docs/runners.md whole; the
// CI systems' job parts are ci/, run by ci_runner_test.go.
func TestREADMERunnerSnippets(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL())
	blocks := readmeBlocks(t, "<!-- checkout_readme_test.go runs")
	if len(blocks) != 1 {
		t.Fatalf("%d marked blocks in %s, want 1 (the shell job; ci_runner_test.go runs the CI systems' parts)", len(blocks), runnerDocs)
	}

	code, pin := srv.call(t, "PUT", apiBase+"/pipelines/41/ref", `{"sha":"`+p.c1+`"}`)
	if code != 201 {
		t.Fatalf("pin = %d %v", code, pin)
	}
	dir := t.TempDir()
	out, err := runShell(t, dir, blocks[0], pinEnv(pin))
	if err != nil || !strings.Contains(out, "testing "+p.c1) || testdata.HeadOf(t, filepath.Join(dir, "work")) != p.c1 {
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
}
