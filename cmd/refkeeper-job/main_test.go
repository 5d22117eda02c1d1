package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the server binary StartServer built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

const testToken = "test-token-0123456789abcdef"

// dockerStage is one stage of the Dockerfile: its FROM line's name and its
// instructions, one a line.
type dockerStage struct {
	name  string
	lines []string
}

// dockerStages reads the repository's Dockerfile (its instructions have no
// continuation lines but in RUN commands, which only the server's stages
// use).
func dockerStages(tb testing.TB) []dockerStage {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		tb.Fatal(err)
	}
	var stages []dockerStage
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			f := strings.Fields(line)
			name := ""
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				name = f[3]
			}
			stages = append(stages, dockerStage{name: name})
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	return stages
}

// buildJobBinary builds the job binary with the Dockerfile's own command
// (its build-job stage's go build, CGO_ENABLED=0), into the test's
// temporary directory, named refkeeper as in the job image. It also holds
// the Dockerfile to its shape: the job target copies that binary into
// /usr/local/bin, and the last stage, what a plain `docker build` builds,
// is still the server's.
func buildJobBinary(tb testing.TB) string {
	tb.Helper()
	stages := dockerStages(tb)
	byName := map[string]dockerStage{}
	for _, st := range stages {
		byName[st.name] = st
	}
	const copyLine = "COPY --from=build-job /out/refkeeper /usr/local/bin/refkeeper"
	if job, ok := byName["job"]; !ok || !slices.Contains(job.lines, copyLine) {
		tb.Fatalf("the Dockerfile has no job stage with %q: %v", copyLine, job.lines)
	}
	if last := stages[len(stages)-1]; last.name == "job" || !slices.Contains(last.lines, `CMD ["serve"]`) {
		tb.Fatalf("the Dockerfile's last stage is not the server's: %v", last.lines)
	}
	var build string
	for _, line := range byName["build-job"].lines {
		if cmd, ok := strings.CutPrefix(line, "RUN CGO_ENABLED=0 go build "); ok && strings.HasSuffix(cmd, " -o /out/refkeeper ./cmd/refkeeper-job") {
			build = strings.TrimPrefix(line, "RUN ")
		}
	}
	if build == "" || strings.Contains(strings.Join(byName["build-job"].lines, "\n"), "libgit2") {
		tb.Fatalf("the Dockerfile's build-job stage does not build ./cmd/refkeeper-job with CGO_ENABLED=0 alone: %v", byName["build-job"].lines)
	}
	bin := filepath.Join(tb.TempDir(), "refkeeper")
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/refkeeper", bin))
	cmd.Dir = filepath.Join("..", "..") // the build context, COPY . .
	// The Dockerfile's build argument; CGO_ENABLED comes from the command.
	cmd.Env = append(os.Environ(), "VERSION=jobtest", "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", build, err, out)
	}
	return bin
}

// TestJobBinary: the job binary builds without cgo into a static ELF (no
// interpreter, no shared library), and its checkout, run as a job runs it
// (a process with git on PATH and the pin's values or an API token in its
// environment), checks the pinned commit out of the real server.
func TestJobBinary(t *testing.T) {
	bin := buildJobBinary(t)

	mod, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil || !strings.Contains(string(mod), "\tbuild\tCGO_ENABLED=0\n") {
		t.Fatalf("go version -m: %v\n%s", err, mod)
	}
	if strings.Contains(string(mod), "git2go") {
		t.Fatalf("the job binary holds git2go:\n%s", mod)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the job binary is dynamically linked: it has a %v program header", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the job binary needs shared libraries %v (%v)", libs, err)
	}

	root := t.TempDir()
	p := testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := testdata.StartServer(t, "--tokens", testToken, "--repos", root, "--redis", r.URL())
	api, err := client.New(client.Options{BaseURL: srv.Base, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	pin, _, err := api.Pin(t.Context(), "group/app", 7, client.PinRequest{SHA: p.First})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.Pin(t.Context(), "group/app", 8, client.PinRequest{MergeRequestIID: &[]int64{12}[0]}); err != nil {
		t.Fatal(err)
	}
	job := func(env ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, "checkout", "work")
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1"}, env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		head, _ := testdata.RunnerGit(t, filepath.Join(cmd.Dir, "work"), "rev-parse", "HEAD")
		return cmd.ProcessState.ExitCode(), strings.TrimSpace(head) + "\n" + out.String()
	}

	code, out := job("REFKEEPER_FETCH_URL="+pin.FetchURL, "REFKEEPER_REFSPEC="+pin.Refspec,
		"REFKEEPER_SHA="+pin.SHA, "REFKEEPER_FETCH_TOKEN="+*pin.FetchToken)
	if code != 0 || !strings.HasPrefix(out, p.First+"\n") {
		t.Fatalf("job binary checkout with the pin's values = %d\n%s", code, out)
	}
	t.Logf("checkout with the pin's values printed:\n%s", out)
	if err := api.DeletePin(t.Context(), "group/app", 7); err != nil {
		t.Fatal(err)
	}
	code, out = job("REFKEEPER_FETCH_URL="+pin.FetchURL, "REFKEEPER_REFSPEC="+pin.Refspec,
		"REFKEEPER_SHA="+pin.SHA, "REFKEEPER_FETCH_TOKEN="+*pin.FetchToken)
	if code != 3 || !strings.Contains(out, "re-pin before retrying this job") {
		t.Fatalf("job binary checkout of a deleted pin = %d\n%s", code, out)
	}

	cmd := exec.Command(bin, "checkout", "work", "--project", "group/app", "--pipeline", "8")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
		"REFKEEPER_URL=" + srv.Base, "REFKEEPER_TOKEN=" + testToken}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("job binary checkout --project --pipeline: %v\n%s", err, out)
	}
	if head, _ := testdata.RunnerGit(t, filepath.Join(cmd.Dir, "work"), "rev-parse", "HEAD"); strings.TrimSpace(head) != p.Merge {
		t.Fatalf("HEAD after checkout --project --pipeline = %q, want %s", head, p.Merge)
	}

	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "refkeeper jobtest (") {
		t.Fatalf("version: %v %s", err, out)
	}
	var exit *exec.ExitError
	if out, err := exec.Command(bin, "serve").CombinedOutput(); !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "not in the job binary") {
		t.Fatalf("serve in the job binary: %v %s", err, out)
	}
}
