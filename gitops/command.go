package gitops

import (
	"context"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// runner is the one git runner (package gitexec) with the Root's settings:
// every git process gitops starts gets its allow-listed environment,
// repository hooks off, and an end: when ctx ends, or GitTimeout after the
// process starts, git gets SIGTERM, on which it removes its lock files; if
// it has not exited after the kill grace it gets SIGKILL.
func (r *Root) runner() *gitexec.Runner {
	return &gitexec.Runner{Git: r.git(), Timeout: r.gitTimeout(), KillGrace: r.killGrace}
}

// command builds every git command gitops runs, on the repository gitDir,
// bounded by GitTimeout.
func (r *Root) command(ctx context.Context, gitDir string, args ...string) *gitexec.Cmd {
	return r.runner().Command(ctx, gitDir, args...)
}

// commandWithin is command with a bound of its own instead of GitTimeout:
// for the one kind of git process that is expected to outlast it
// (housekeeping repacks a whole mirror).
func (r *Root) commandWithin(ctx context.Context, bound time.Duration, gitDir string, args ...string) *gitexec.Cmd {
	return r.runner().CommandWith(ctx, gitexec.Options{GitDir: gitDir, Bound: bound}, args...)
}

func (r *Root) gitTimeout() time.Duration {
	if r.GitTimeout > 0 {
		return r.GitTimeout
	}
	return DefaultGitTimeout
}
