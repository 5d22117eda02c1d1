package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the server binary StartServer built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

const testToken = "test-token-0123456789abcdef"

// buildJobBinary builds this package as the Dockerfile's job target and
// `make build-job` do (CGO_ENABLED=0), into the test's temporary directory,
// named refkeeper as in the job image.
func buildJobBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "refkeeper")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=jobtest", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
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
