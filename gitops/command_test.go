package gitops

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// realGit is the path of the git CLI, for wrappers that end by running it.
func realGit(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("git")
	if err != nil {
		tb.Skip("git not installed")
	}
	return path
}

// writeHook installs an executable reference-transaction hook in dir that
// appends its arguments to marker.
func writeHook(tb testing.TB, dir, marker string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	hook := "#!/bin/sh\necho \"$@\" >> " + marker + "\ncat > /dev/null\n"
	if err := os.WriteFile(filepath.Join(dir, "reference-transaction"), []byte(hook), 0o755); err != nil {
		tb.Fatal(err)
	}
}

// TestGitSeesNoSecretsAndRunsNoHooks: every git process gitops starts (the
// group-commit writer, a checked create, a batch delete, a pack) gets the
// allow-listed environment and no repository hook, whatever the service's
// environment holds and whatever hooks the repository has.
func TestGitSeesNoSecretsAndRunsNoHooks(t *testing.T) {
	f := newFixture(t)
	const secret = "api-token-that-must-stay-home"
	t.Setenv("REFKEEPER_API_TOKENS", secret)
	t.Setenv("REFKEEPER_FETCH_TOKEN_KEYS", secret+"-key")
	t.Setenv("GIT_DIR", "/nonexistent") // an inherited GIT_* would redirect git

	// A hook in the repository's own hooks directory and one in a
	// configured core.hooksPath; git runs the configured one.
	marker := filepath.Join(t.TempDir(), "hook-ran")
	writeHook(t, filepath.Join(f.repo.Dir(), "hooks"), marker)
	configured := filepath.Join(t.TempDir(), "hooks")
	writeHook(t, configured, marker)
	f.git.Git(t, "config", "core.hooksPath", configured)
	// The hook works: plain git runs it.
	cli := exec.Command("git", "--git-dir", f.repo.Dir(), "update-ref", "refs/pipelines/999", string(f.c1))
	cli.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("git update-ref: %v: %s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the hook did not run for plain git, so this test shows nothing: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	dump := filepath.Join(t.TempDir(), "dump")
	f.root.GitBinary = fakeGit(t, `{ echo "ARGV $*"; env; echo END; } >> `+dump+`
exec `+realGit(t)+` "$@"
`)
	ctx := t.Context()
	if created, err := f.repo.Create(ctx, PipelineRef(1), f.c1); err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	if created, err := f.repo.CreateChecked(ctx, PipelineRef(2), f.c1, func() (bool, error) { return true, nil }); err != nil || !created {
		t.Fatalf("CreateChecked = %v, %v", created, err)
	}
	if deleted, err := f.repo.Delete(ctx, PipelineRef(999), f.c1); err != nil || !deleted {
		t.Fatalf("Delete = %v, %v", deleted, err)
	}
	if err := f.repo.packRefs(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		hooked, _ := os.ReadFile(marker)
		t.Errorf("a repository hook ran: %q", hooked)
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "REFKEEPER_") {
		t.Errorf("a secret reached git:\n%s", raw)
	}
	// What the shell running the wrapper adds itself.
	shell := map[string]bool{"PWD": true, "SHLVL": true, "_": true, "OLDPWD": true}
	allowed := map[string]bool{}
	for _, kv := range gitexec.Env() {
		allowed[strings.SplitN(kv, "=", 2)[0]] = true
	}
	runs := strings.Split(strings.TrimSuffix(string(raw), "END\n"), "END\n")
	subcommands := map[string]bool{}
	for _, run := range runs {
		lines := strings.Split(strings.TrimSpace(run), "\n")
		argv := strings.Fields(strings.TrimPrefix(lines[0], "ARGV "))
		if len(argv) < 4 || argv[0] != "-c" || argv[1] != "core.hooksPath=/dev/null" || argv[2] != "--git-dir" {
			t.Errorf("git started without hooks off: %v", argv)
		}
		subcommands[argv[len(argv)-2]+" "+argv[len(argv)-1]] = true
		env := map[string]string{}
		for _, kv := range lines[1:] {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
			if !allowed[k] && !shell[k] {
				t.Errorf("git got %s, which is not on the allow list", k)
			}
		}
		for k, want := range map[string]string{"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
			"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "HOME": "/dev/null"} {
			if env[k] != want {
				t.Errorf("git got %s=%q, want %q", k, env[k], want)
			}
		}
	}
	if !subcommands["update-ref --stdin"] || !subcommands["--all --prune"] {
		t.Errorf("the wrapper saw %v; want update-ref and pack-refs", subcommands)
	}
}

// hangingGit is a git that, the first time it runs (or always, when once is
// false), writes its pid to pids, then to the fifo ready if not empty, and
// then hangs, ignoring SIGTERM; after that it is the real git.
func hangingGit(tb testing.TB, pids string, once bool, ready string) string {
	tb.Helper()
	guard := ""
	if once {
		flag := filepath.Join(tb.TempDir(), "hung")
		guard = `if [ ! -e ` + flag + ` ]; then : > ` + flag + `; else exec ` + realGit(tb) + ` "$@"; fi
`
	}
	tell := ""
	if ready != "" {
		tell = "echo go > " + ready + "\n"
	}
	return fakeGit(tb, guard+`echo $$ >> `+pids+`
trap '' TERM
`+tell+`exec sleep 1000
`)
}

// readPids reads the pids a hanging git wrote.
func readPids(tb testing.TB, path string) []int {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			tb.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether a process with pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestHungGitIsKilled: a git that hangs and ignores SIGTERM is killed once
// the git timeout and the grace have passed; every call returns a transient
// TimeoutError, tries no second git, and leaves no process behind.
func TestHungGitIsKilled(t *testing.T) {
	f := newFixture(t)
	f.root.GitTimeout = time.Second // long enough for a loaded machine to start the script
	f.root.killGrace = 100 * time.Millisecond
	pids := filepath.Join(t.TempDir(), "pids")
	f.root.GitBinary = hangingGit(t, pids, false, "")
	ctx := t.Context()

	calls := []struct {
		name string
		run  func() error
	}{
		{"Create", func() error { _, err := f.repo.Create(ctx, PipelineRef(1), f.c1); return err }},
		{"CreateChecked", func() error {
			_, err := f.repo.CreateChecked(ctx, PipelineRef(2), f.c1, func() (bool, error) { return true, nil })
			return err
		}},
		{"DeleteBatch", func() error {
			results, err := f.repo.DeleteBatch(ctx, []RefState{{Ref: PipelineRef(3), ID: f.c1}})
			if err != nil {
				return err
			}
			if results[0].Outcome != Failed {
				t.Errorf("DeleteBatch outcome %v, want failed", results[0].Outcome)
			}
			return results[0].Err
		}},
		{"packRefs", func() error { return f.repo.packRefs(ctx) }},
	}
	for i, c := range calls {
		err := c.run()
		var timeout *TimeoutError
		switch {
		case c.name == "packRefs":
			if err == nil {
				t.Errorf("%s of a hung git = nil", c.name)
			}
		case !errors.As(err, &timeout) || !IsTransient(err):
			t.Errorf("%s of a hung git = %v, want a transient TimeoutError", c.name, err)
		}
		started := readPids(t, pids)
		if len(started) != i+1 {
			t.Fatalf("after %s: %d git processes started in all, want %d (no second try)", c.name, len(started), i+1)
		}
		if pid := started[i]; alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s returned with its git (pid %d) still running", c.name, pid)
		}
	}
	if _, ok := f.git.RefSHA(t, "refs/pipelines/1"); ok {
		t.Error("a killed transaction created its ref")
	}
}

// TestCallerStopsWaiting: a create whose context ends while its transaction
// runs answers at once with the context's error; the transaction, shared
// with other creates, is not cut short by it.
func TestCallerStopsWaiting(t *testing.T) {
	f := newFixture(t)
	pids := filepath.Join(t.TempDir(), "pids")
	ready := fifo(t, "ready")
	f.root.GitBinary = hangingGit(t, pids, true, ready)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := f.repo.Create(ctx, PipelineRef(1), f.c1)
		done <- err
	}()
	if _, err := os.ReadFile(ready); err != nil { // returns once git runs
		t.Fatal(err)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create after its context ended = %v, want context.Canceled", err)
	}
	started := readPids(t, pids)
	if len(started) != 1 || !alive(started[0]) {
		t.Fatalf("git processes %v: want the one transaction still running", started)
	}
	// End the hung git by hand; the writer's next process is the real git.
	if err := syscall.Kill(started[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if created, err := f.repo.Create(t.Context(), PipelineRef(2), f.c1); err != nil || !created {
		t.Fatalf("Create after the hung git ended = %v, %v", created, err)
	}
}

// TestLockWaitHonoursContext: a create waiting for another writer's lock
// stops when its context ends, long before the lock timeout.
func TestLockWaitHonoursContext(t *testing.T) {
	f := newFixture(t)
	f.root.LockTimeout = time.Hour
	lock := f.repo.lockPath(PipelineRef(5))
	writeLock(t, lock, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.repo.Create(ctx, PipelineRef(5), f.c1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create behind a live lock with a short context = %v, want context.DeadlineExceeded", err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("the live lock went: %v", err)
	}
}
