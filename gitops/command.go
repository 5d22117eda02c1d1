package gitops

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// defaultKillGrace is how long a git process has to exit after SIGTERM
// before it is killed.
const defaultKillGrace = 5 * time.Second

// gitHome is git's HOME: a path that cannot be a directory, so no
// ~/.gitconfig, ~/.config/git or credential store of the service's user is
// ever read, whoever runs the service.
const gitHome = os.DevNull

// gitEnv is the whole environment of every git process: nothing is
// inherited but PATH (git finds its own helpers through it). The service's
// environment holds its secrets (the API tokens, the fetch token keys); a
// git process and any program it might start see none of them.
func gitEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + gitHome,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
}

// command builds every git command gitops runs, on the repository gitDir:
// the environment of gitEnv, no hooks (update-ref runs a repository's
// reference-transaction hook while it holds ref locks, so a slow or hostile
// hook would hold every writer of the ref; refkeeper runs no repository
// code), and an end. When ctx ends, or GitTimeout after the process starts,
// git gets SIGTERM, on which it removes its lock files; if it has not
// exited after the kill grace it gets SIGKILL and the command's pipes are
// closed, so Wait returns in any case.
//
// The timeout's timer is not released when the process exits early: it
// lapses by itself at GitTimeout, holding no goroutine.
func (r *Root) command(ctx context.Context, gitDir string, args ...string) *exec.Cmd {
	return r.commandWithin(ctx, r.gitTimeout(), gitDir, args...)
}

// commandWithin is command with a bound of its own instead of GitTimeout:
// for the one kind of git process that is expected to outlast it
// (housekeeping repacks a whole mirror).
func (r *Root) commandWithin(ctx context.Context, bound time.Duration, gitDir string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(ctx, bound)
	full := append([]string{"-c", "core.hooksPath=" + os.DevNull, "--git-dir", gitDir}, args...)
	cmd := exec.CommandContext(ctx, r.git(), full...)
	cmd.Env = gitEnv()
	// Its own process group, signalled whole: git fetch runs a remote
	// helper (git-remote-http) that would otherwise outlive it, holding the
	// upstream's connection and the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		defer cancel()
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = r.grace()
	return cmd
}

func (r *Root) gitTimeout() time.Duration {
	if r.GitTimeout > 0 {
		return r.GitTimeout
	}
	return DefaultGitTimeout
}

func (r *Root) grace() time.Duration {
	if r.killGrace > 0 {
		return r.killGrace
	}
	return defaultKillGrace
}
