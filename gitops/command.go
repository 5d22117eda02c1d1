package gitops

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// commandEnvAllowed are the variables of the service's own environment a
// git child process inherits; everything else (tokens, GIT_DIR of a
// surrounding hook, the user's config locations) stays out.
var commandEnvAllowed = []string{"PATH", "TMPDIR", "GIT_EXEC_PATH"}

// commandGrace is how long a git process has to exit after SIGTERM (git
// removes its lock files on SIGTERM) before it is killed.
const commandGrace = 5 * time.Second

// command prepares git to run on the repository at gitDir: hooks off, no
// system or user config (so every replica computes the same), a minimal
// environment built from an allow list, and SIGTERM when ctx ends, then
// SIGKILL after a grace. Callers add their own variables to cmd.Env.
func (r *Root) command(ctx context.Context, gitDir string, args ...string) *exec.Cmd {
	full := append([]string{"-c", "core.hooksPath=" + os.DevNull, "--git-dir", gitDir}, args...)
	cmd := exec.CommandContext(ctx, r.git(), full...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = commandGrace
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
	for _, name := range commandEnvAllowed {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	cmd.Env = env
	return cmd
}
