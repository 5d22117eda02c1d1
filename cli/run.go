package cli

import (
	"context"
	"fmt"
	"io"
)

// Exit statuses of every client command.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
	// ExitGone: the pin is gone; a retried job must pin again before it
	// fetches.
	ExitGone = 3
)

// Usage lists the client commands, one a line, for a binary's usage text.
const Usage = `  pin       pin a pipeline's ref (by SHA, merge request or computed merge)
  finish    release a pin (its ref stays for the retention window)
  get       print a pin (exit 3 when it is gone)
  list      list a project's pins
  delete    delete a pipeline's ref now
  close     say a merge request was merged or closed
  gc        run one GC sweep now
  projects  list, show, mirror or remove projects
  checkout  fetch and check out a pinned ref in a job (exit 3: re-pin)
`

// UsageFooter says where the flags and the token come from.
const UsageFooter = `Run 'refkeeper <command> -h' for the flags of a command. The API commands
read --url or REFKEEPER_URL, and the token from REFKEEPER_TOKEN or
--token-file (never from the command line).
`

// commands maps each command's name to its body.
var commands = map[string]func(context.Context, *cli, []string) int{
	"pin": runPin, "finish": runFinish, "get": runGet, "list": runList, "delete": runDelete,
	"close": runClose, "gc": runGC, "projects": runProjects, "checkout": runCheckout,
}

// IsCommand says whether name is a client command.
func IsCommand(name string) bool {
	_, ok := commands[name]
	return ok
}

// Run runs the client command name with args, getenv standing for the
// process's environment, and answers the process exit status.
func Run(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	body, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "refkeeper: unknown command %q (try 'refkeeper help')\n", name)
		return ExitUsage
	}
	return body(ctx, &cli{name: "refkeeper " + name, getenv: getenv, stdout: stdout, stderr: stderr}, args)
}
