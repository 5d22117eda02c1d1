package gitops

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// git children get an environment from the allow list only: nothing of the
// service's own (a token, a GIT_DIR of a surrounding hook) leaks in.
func TestCommandEnvironmentAndArguments(t *testing.T) {
	t.Setenv("REFKEEPER_API_TOKENS", "secret-token-0123456789")
	t.Setenv("GIT_DIR", "/somewhere/else")
	t.Setenv("HOME", "/home/someone")
	root := &Root{GitBinary: "git"}
	cmd := root.command(context.Background(), "/repo.git", "merge-tree", "--write-tree", "a", "b")
	for _, kv := range cmd.Env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(commandEnvAllowed, name) && !slices.Contains(
			[]string{"GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_TERMINAL_PROMPT", "LC_ALL"}, name) {
			t.Errorf("git inherits %s", kv)
		}
	}
	if want := []string{"git", "-c", "core.hooksPath=/dev/null", "--git-dir", "/repo.git", "merge-tree", "--write-tree", "a", "b"}; !slices.Equal(cmd.Args, want) {
		t.Errorf("args = %q, want %q", cmd.Args, want)
	}
	if cmd.Cancel == nil || cmd.WaitDelay <= 0 {
		t.Error("no SIGTERM on cancel or no grace before SIGKILL")
	}
}

// A git that ignores SIGTERM is killed after the grace.
func TestCommandEndsWithItsContext(t *testing.T) {
	root := &Root{GitBinary: "sh"}
	ctx, cancel := context.WithCancel(context.Background())
	// sh -c: the "--git-dir" and the rest are the script's arguments.
	cmd := root.command(ctx, "/repo.git", "trap '' TERM; while :; do sleep 0.05; done")
	cmd.Args = []string{"sh", "-c", cmd.Args[len(cmd.Args)-1]}
	cmd.WaitDelay = 200 * time.Millisecond
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := cmd.Wait(); err == nil {
		t.Fatal("a process ignoring SIGTERM was not ended")
	}
}
