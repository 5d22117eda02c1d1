package gitexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

const (
	// DefaultTimeout bounds a Runner's git process when its Timeout is
	// zero.
	DefaultTimeout = 60 * time.Second
	// DefaultKillGrace is how long a git process has to exit after SIGTERM
	// before it is killed.
	DefaultKillGrace = 5 * time.Second
)

// Cmd is a git process built here; callers name it without importing
// os/exec, which only this package does.
type Cmd = exec.Cmd

// home is git's HOME: a path that cannot be a directory, so no
// ~/.gitconfig, ~/.config/git or credential store of the service's user is
// ever read, whoever runs the service.
const home = os.DevNull

// Env is the whole environment of every server-side git process: nothing
// is inherited but PATH (git finds its own helpers through it). The
// service's environment holds its secrets (the API tokens, the fetch token
// keys); a git process and any program it might start see none of them.
func Env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
}

// ConfigEnv gives git configuration through the environment
// (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_<n>, GIT_CONFIG_VALUE_<n>): git reads
// it as command-line configuration, which it trusts where it trusts no
// repository's own (uploadpack.packObjectsHook), and it stays off every
// process list, unlike -c. For Options.Env.
func ConfigEnv(kv [][2]string) []string {
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(kv))}
	for i, p := range kv {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, p[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, p[1]))
	}
	return env
}

// Process says how one git process runs.
type Process struct {
	// Git is the executable: a path, or a name looked up in this
	// process's PATH. Empty: "git".
	Git string
	// Env is the process's whole environment; nil: none at all.
	Env []string
	// Dir is its working directory; empty: this process's.
	Dir string
	// Bound is the longest it may run; zero: until ctx ends.
	Bound time.Duration
	// Grace is how long it has after SIGTERM; zero: DefaultKillGrace.
	Grace time.Duration
}

// Command builds a git process with args. Its own process group is
// signalled whole: git fetch runs a remote helper (git-remote-http) and
// http-backend runs upload-pack, which would otherwise outlive it, holding
// a connection and the output pipe. When ctx ends, or Bound after the
// process starts, the group gets SIGTERM; if git has not exited after the
// grace it gets SIGKILL and the command's pipes are closed, so Wait returns
// in any case.
//
// The bound's timer is not released when the process exits early: it
// lapses by itself, holding no goroutine.
func Command(ctx context.Context, p Process, args ...string) *Cmd {
	cancel := context.CancelFunc(func() {})
	if p.Bound > 0 {
		ctx, cancel = context.WithTimeout(ctx, p.Bound)
	}
	git := p.Git
	if git == "" {
		git = "git"
	}
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Env = p.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		defer cancel()
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = p.Grace
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultKillGrace
	}
	return cmd
}

// Runner starts server-side git processes: the environment of Env,
// repository hooks off, and a bound. The zero Runner runs "git" from PATH
// with the defaults.
type Runner struct {
	// Git is the executable. Empty: "git" from PATH.
	Git string
	// Timeout is the longest one git process may run; past it git gets
	// SIGTERM, and SIGKILL a grace later. Zero: DefaultTimeout.
	Timeout time.Duration
	// KillGrace is how long git has to exit after SIGTERM. Zero:
	// DefaultKillGrace.
	KillGrace time.Duration
}

// Options are what a git process of a Runner may have besides its
// arguments.
type Options struct {
	// GitDir is the repository (git --git-dir); empty: none given.
	GitDir string
	// Dir is the working directory; empty: this process's.
	Dir string
	// Env is added to Env() (the CGI variables of http-backend, an object
	// directory of a merge).
	Env []string
	// Bound replaces the Runner's Timeout, for the one kind of process
	// that is expected to outlast it (housekeeping repacks a whole
	// mirror). Zero: the Runner's.
	Bound time.Duration
}

// hooksOff keeps every repository hook from running: update-ref runs a
// repository's reference-transaction hook while it holds ref locks, so a
// slow or hostile hook would hold every writer of the ref; refkeeper runs
// no repository code. Given on the command line, git passes it on to every
// git it starts (GIT_CONFIG_PARAMETERS), upload-pack under http-backend too.
var hooksOff = []string{"-c", "core.hooksPath=" + os.DevNull}

// Command builds the git process args on the repository gitDir, bounded
// by the Runner's Timeout.
func (r *Runner) Command(ctx context.Context, gitDir string, args ...string) *Cmd {
	return r.CommandWith(ctx, Options{GitDir: gitDir}, args...)
}

// CommandWith builds the git process args as o says.
func (r *Runner) CommandWith(ctx context.Context, o Options, args ...string) *Cmd {
	full := append([]string{}, hooksOff...)
	if o.GitDir != "" {
		full = append(full, "--git-dir", o.GitDir)
	}
	bound := o.Bound
	if bound <= 0 {
		bound = r.TimeoutOrDefault()
	}
	return Command(ctx, Process{
		Git:   r.Git,
		Env:   append(Env(), o.Env...),
		Dir:   o.Dir,
		Bound: bound,
		Grace: r.KillGrace,
	}, append(full, args...)...)
}

// TimeoutOrDefault is the bound of the Runner's processes.
func (r *Runner) TimeoutOrDefault() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

// LookPath finds the git executable name the way Command will, so a
// missing git is found at start-up rather than at the first request.
func LookPath(name string) (string, error) {
	if name == "" {
		name = "git"
	}
	return exec.LookPath(name)
}

// ExitCode is the exit status of a git process that ended on its own, from
// the error of Run or Wait; -1 when err is not such an ending (nil, a
// signal, a process that did not start).
func ExitCode(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return -1
	}
	return exit.ExitCode()
}

// Signaled reports whether a git process was ended by a signal, from the
// error of Run or Wait.
func Signaled(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
