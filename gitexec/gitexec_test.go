package gitexec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRunnerCommand: a Runner's git gets hooks off and the repository on
// its command line, exactly Env() plus the caller's variables as its
// environment (nothing of this process's, here a secret), and its
// working directory.
func TestRunnerCommand(t *testing.T) {
	t.Setenv("REFKEEPER_API_TOKENS", "secret-that-stays-home")
	dump := filepath.Join(t.TempDir(), "dump")
	git := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\n{ echo \"$*\"; pwd; env; } > " + dump + "\n"
	if err := os.WriteFile(git, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Runner{Git: git}
	cmd := r.CommandWith(t.Context(), Options{GitDir: "/repos/a.git", Dir: dir, Env: []string{"EXTRA=1"}}, "rev-parse", "HEAD")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if lines[0] != "-c core.hooksPath=/dev/null --git-dir /repos/a.git rev-parse HEAD" {
		t.Errorf("argv %q", lines[0])
	}
	if lines[1] != dir {
		t.Errorf("ran in %q, want %q", lines[1], dir)
	}
	want := append(Env(), "EXTRA=1")
	shell := map[string]bool{"PWD": true, "SHLVL": true, "_": true, "OLDPWD": true}
	for _, kv := range lines[2:] {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(want, kv) && !shell[name] {
			t.Errorf("git got %s, which is not on the allow list", kv)
		}
	}
	for _, kv := range want {
		if !slices.Contains(lines[2:], kv) {
			t.Errorf("git did not get %s", kv)
		}
	}
}

// TestCommandEndings: ExitCode and Signaled tell how a process ended; a
// process that outlives its Bound is signalled.
func TestCommandEndings(t *testing.T) {
	ctx := context.Background()
	sh := Process{Git: "/bin/sh"}
	if err := Command(ctx, sh, "-c", "exit 3").Run(); ExitCode(err) != 3 || Signaled(err) {
		t.Errorf("exit 3: ExitCode %d, Signaled %v", ExitCode(err), Signaled(err))
	}
	if err := Command(ctx, sh, "-c", "exit 0").Run(); err != nil || ExitCode(err) != -1 {
		t.Errorf("exit 0: %v, ExitCode %d", err, ExitCode(err))
	}
	sh.Bound, sh.Grace = 200*time.Millisecond, 100*time.Millisecond
	start := time.Now()
	err := Command(ctx, sh, "-c", "sleep 30").Run()
	if !Signaled(err) || ExitCode(err) != -1 || time.Since(start) > 10*time.Second {
		t.Errorf("sleep past its bound: %v after %v, Signaled %v", err, time.Since(start), Signaled(err))
	}
}
