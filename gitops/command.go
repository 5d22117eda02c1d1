package gitops

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// commandGrace is how long a git process may take to end after SIGTERM
// before it is killed: git removes its lock files on SIGTERM, so it gets
// the chance first.
const commandGrace = 5 * time.Second

// inheritedEnv is the part of the service's environment a git process may
// see: where programs are, where temporary files go, which CA certificates
// an https upstream is checked against, and how to reach it through a proxy.
// Everything else (tokens, keys, the operator's GIT_* variables) stays out.
var inheritedEnv = []string{
	"PATH", "TMPDIR",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

// gitEnv is the environment of every git process: the allow-listed part of
// the service's own, no system or user config (a ~/.gitconfig with a
// credential helper or url.insteadOf must not change what the service
// does), no prompt, and English messages (errors are classified by them).
func gitEnv() []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=",
		"SSH_ASKPASS=",
		"LC_ALL=C",
	}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// command prepares git on the repository at gitDir (none when empty): hooks
// off, the allow-listed environment, and SIGTERM to its process group when
// ctx ends, SIGKILL to git commandGrace later. Callers add stdin, stdout and extra files, then run
// it. It is the one place that starts git.
func (r *Root) command(ctx context.Context, gitDir string, args ...string) *exec.Cmd {
	full := make([]string, 0, len(args)+4)
	full = append(full, "-c", "core.hooksPath="+os.DevNull)
	if gitDir != "" {
		full = append(full, "--git-dir", gitDir)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, r.git(), full...)
	cmd.Env = gitEnv()
	// Its own process group, signalled whole: git fetch runs a remote
	// helper (git-remote-http) that would otherwise outlive it, holding the
	// connection and the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = commandGrace
	return cmd
}
