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

// serveFlags are the flags of `refkeeper serve` and their environment
// variables, as the built binary's -h lists them.
type serveFlags struct {
	envOf map[string]string // flag name -> environment variable
	isEnv map[string]bool   // environment variable -> true
}

var flagEnvLine = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)\s+(REFKEEPER_[A-Z0-9_]+)\s*$`)

// knownServeFlags builds the binary and reads its flag table.
func knownServeFlags(tb testing.TB) serveFlags {
	tb.Helper()
	out, err := run(tb, nil, testdata.RefkeeperBinary(tb), "serve", "-h")
	if err != nil {
		tb.Fatalf("refkeeper serve -h: %v\n%s", err, out)
	}
	f := serveFlags{envOf: map[string]string{}, isEnv: map[string]bool{}}
	for _, m := range flagEnvLine.FindAllStringSubmatch(out, -1) {
		f.envOf[m[1]] = m[2]
		f.isEnv[m[2]] = true
	}
	// Enough of the table to know the parse worked.
	for _, want := range []string{"listen", "redis", "tokens-file", "shutdown-timeout"} {
		if f.envOf[want] == "" {
			tb.Fatalf("refkeeper serve -h lists no --%s with its variable; the output:\n%s", want, out)
		}
	}
	return f
}
