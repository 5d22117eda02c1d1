package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// runnerGit runs git in dir as a runner's user would, failing the test on
// error.
func runnerGit(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	out, err := testdata.RunnerGit(tb, dir, args...)
	if err != nil {
		tb.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(out)
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// refusedLine is checkout's one line for a DIR it leaves alone.
var refusedLine = regexp.MustCompile(`^refkeeper checkout: .+: left untouched \(--force overrides\)\n$`)

// TestCheckoutNeverDestroysWork: checkout works only in a DIR that is
// absent, empty, or a clean work tree of an earlier checkout; anything else
// is exit 1, one line naming the problem, DIR as it was. The first case is
// what was seen: a scratch repository's uncommitted edit, which `git
// checkout -f` threw away.
func TestCheckoutNeverDestroysWork(t *testing.T) {
	s := startPinnedServer(t, "")
	p, srv, api := s.p, s.srv, s.api
	pin := s.pin(t, 7, client.PinRequest{SHA: p.First})
	env := pinEnv(pin)

	t.Run("a scratch repository with an uncommitted edit", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "scratch")
		runnerGit(t, t.TempDir(), "init", "-q", dir)
		writeFile(t, filepath.Join(dir, "notes.txt"), "committed\n")
		runnerGit(t, dir, "add", "notes.txt")
		runnerGit(t, dir, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "notes")
		head := runnerGit(t, dir, "rev-parse", "HEAD")
		writeFile(t, filepath.Join(dir, "notes.txt"), "an hour of uncommitted work\n")

		code, out, errOut := cliRun(t, env, nil, "checkout", dir)
		if code != ExitError || !refusedLine.MatchString(errOut) || !strings.Contains(errOut, dir+" is a git repository that refkeeper checkout did not make") {
			t.Fatalf("checkout in a scratch repository = %d\n%s%s", code, out, errOut)
		}
		t.Logf("printed: %s", errOut)
		if got := readFile(t, filepath.Join(dir, "notes.txt")); got != "an hour of uncommitted work\n" {
			t.Fatalf("the uncommitted edit is now %q", got)
		}
		if got := runnerGit(t, dir, "rev-parse", "HEAD"); got != head {
			t.Fatalf("HEAD moved from %s to %s", head, got)
		}
		if refs := runnerGit(t, dir, "for-each-ref", "--format=%(refname)"); refs != runnerGit(t, dir, "symbolic-ref", "HEAD") {
			t.Fatalf("checkout fetched into the scratch repository: %s", refs)
		}
		if mark, _ := testdata.RunnerGit(t, dir, "config", "--get", checkoutMark); mark != "" {
			t.Fatalf("checkout marked the scratch repository: %q", mark)
		}

		// --force is the override: the edit is lost, as asked.
		if code, _, errOut := cliRun(t, env, nil, "checkout", dir, "--force"); code != 0 || testdata.HeadOf(t, dir) != p.First {
			t.Fatalf("checkout --force = %d %s", code, errOut)
		}
	})

	t.Run("a directory with files and no repository", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "build.log"), "keep me\n")
		code, _, errOut := cliRun(t, env, nil, "checkout", dir)
		if code != ExitError || !refusedLine.MatchString(errOut) || !strings.Contains(errOut, "is not empty and is no repository of an earlier refkeeper checkout") {
			t.Fatalf("checkout into a directory with files = %d %q", code, errOut)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 || readFile(t, filepath.Join(dir, "build.log")) != "keep me\n" {
			t.Fatalf("the directory changed: %v", entries)
		}
	})

	t.Run("a directory inside another repository", func(t *testing.T) {
		// git would find the parent's repository from the subdirectory;
		// checkout must not take it for DIR's.
		parent := filepath.Join(t.TempDir(), "parent")
		if code, _, errOut := cliRun(t, env, nil, "checkout", parent); code != 0 {
			t.Fatalf("checkout = %d %s", code, errOut)
		}
		sub := filepath.Join(parent, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(sub, "x.txt"), "x\n")
		if code, _, errOut := cliRun(t, env, nil, "checkout", sub); code != ExitError || !strings.Contains(errOut, "is not empty and is no repository") {
			t.Fatalf("checkout into a subdirectory of a checkout = %d %q", code, errOut)
		}
	})

	t.Run("a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "work")
		writeFile(t, file, "not a directory\n")
		if code, _, errOut := cliRun(t, env, nil, "checkout", file); code != ExitError || !strings.Contains(errOut, file+" is not a directory") {
			t.Fatalf("checkout onto a file = %d %q", code, errOut)
		}
		if readFile(t, file) != "not a directory\n" {
			t.Fatal("the file changed")
		}
	})

	t.Run("an earlier checkout's work tree", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "work")
		if code, _, errOut := cliRun(t, env, nil, "checkout", dir); code != 0 {
			t.Fatalf("checkout = %d %s", code, errOut)
		}
		if mark := runnerGit(t, dir, "config", "--get", checkoutMark); mark != "true" {
			t.Fatalf("%s = %q", checkoutMark, mark)
		}
		// A tracked file edited, then staged: refused, kept.
		writeFile(t, filepath.Join(dir, "app.txt"), "edited\n")
		code, _, errOut := cliRun(t, env, nil, "checkout", dir)
		if code != ExitError || !refusedLine.MatchString(errOut) || !strings.Contains(errOut, "has local changes ( M app.txt)") {
			t.Fatalf("checkout over an edit = %d %q", code, errOut)
		}
		runnerGit(t, dir, "add", "app.txt")
		if code, _, errOut := cliRun(t, env, nil, "checkout", dir); code != ExitError || !strings.Contains(errOut, "has local changes (M  app.txt)") {
			t.Fatalf("checkout over a staged edit = %d %q", code, errOut)
		}
		if readFile(t, filepath.Join(dir, "app.txt")) != "edited\n" {
			t.Fatal("the edit is lost")
		}
		runnerGit(t, dir, "reset", "-q", "--hard")

		// An untracked file, deep in a new directory: refused, kept.
		if err := os.MkdirAll(filepath.Join(dir, "out", "gen"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "out", "gen", "result.txt"), "results\n")
		if code, _, errOut := cliRun(t, env, nil, "checkout", dir); code != ExitError || !strings.Contains(errOut, "has local changes (?? out/gen/result.txt)") {
			t.Fatalf("checkout over an untracked file = %d %q", code, errOut)
		}
		if readFile(t, filepath.Join(dir, "out", "gen", "result.txt")) != "results\n" {
			t.Fatal("the untracked file is lost")
		}
		if err := os.RemoveAll(filepath.Join(dir, "out")); err != nil {
			t.Fatal(err)
		}

		// Clean again: another pin into the same work tree.
		if _, _, err := api.Pin(t.Context(), "group/app", 8, client.PinRequest{MergeRequestIID: &[]int64{12}[0]}); err != nil {
			t.Fatal(err)
		}
		lookup := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}
		if code, _, errOut := cliRun(t, lookup, nil, "checkout", dir, "--project", "group/app", "--pipeline", "8"); code != 0 || testdata.HeadOf(t, dir) != p.Merge {
			t.Fatalf("checkout of another pin into a clean work tree = %d %s", code, errOut)
		}
	})
}
