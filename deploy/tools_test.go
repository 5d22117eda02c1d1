package deploy

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// tool is the path of an installed command the tests run. A missing one
// fails the test: scripts/install-deps.sh (run by make test and CI)
// installs it, so missing means the machine was not set up, not that the
// check may be left out.
func tool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s is not installed: run scripts/install-deps.sh (make test does): %v", name, err)
	}
	return path
}

// run runs a command and answers its combined output and error.
func run(tb testing.TB, env []string, name string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// serveFlags are the flags of `refkeeper serve` and the environment
// variables it reads, as the built binary's -h lists them.
type serveFlags struct {
	flags map[string]bool // flag names, without dashes
	envs  map[string]bool // environment variables
}

// In -h, each flag starts a line with two spaces and one or two dashes
// (continuation lines are indented further), and the variables are named
// in full wherever they are listed.
var (
	helpFlag = regexp.MustCompile(`(?m)^  --?([a-z][a-z0-9-]*)`)
	helpEnv  = regexp.MustCompile(`\bREFKEEPER_[A-Z0-9_]+\b`)
)

// knownServeFlags builds the binary and reads its flags and variables.
func knownServeFlags(tb testing.TB) serveFlags {
	tb.Helper()
	out, err := run(tb, nil, testdata.RefkeeperBinary(tb), "serve", "-h")
	if err != nil {
		tb.Fatalf("refkeeper serve -h: %v\n%s", err, out)
	}
	f := serveFlags{flags: map[string]bool{}, envs: map[string]bool{}}
	for _, m := range helpFlag.FindAllStringSubmatch(out, -1) {
		f.flags[m[1]] = true
	}
	for _, env := range helpEnv.FindAllString(out, -1) {
		f.envs[env] = true
	}
	// Enough of both to know the parse worked.
	for _, want := range []string{"listen", "redis", "tokens-file", "shutdown-timeout"} {
		if !f.flags[want] {
			tb.Fatalf("refkeeper serve -h lists no --%s; the output:\n%s", want, out)
		}
	}
	for _, want := range []string{"REFKEEPER_REDIS_URL", "REFKEEPER_GITLAB_HOOK_TOKEN"} {
		if !f.envs[want] {
			tb.Fatalf("refkeeper serve -h names no %s; the output:\n%s", want, out)
		}
	}
	return f
}
