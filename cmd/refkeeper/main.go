package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	// The first signal starts a graceful shutdown; stop then gives the
	// signals back to their default, so a second one ends the process at
	// once (an operator's second Ctrl-C).
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage: refkeeper <command> [flags]

commands:
  serve     run the HTTP API, task workers and GC scheduler
  pin       pin a pipeline's ref (by SHA, merge request or computed merge)
  finish    release a pin (its ref stays for the retention window)
  get       print a pin (exit 3 when it is gone)
  list      list a project's pins
  delete    delete a pipeline's ref now
  close     say a merge request was merged or closed
  gc        run one GC sweep now
  projects  list, show, mirror or remove projects
  checkout  fetch and check out a pinned ref in a job (exit 3: re-pin)
  version   print the version

Run 'refkeeper <command> -h' for the flags of a command. The API commands
read --url or REFKEEPER_URL, and the token from REFKEEPER_TOKEN or
--token-file (never from the command line).
`

// run executes one command and answers the process exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	case "pin", "finish", "get", "list", "delete", "close", "gc", "projects", "checkout":
		return runCLI(ctx, args[0], args[1:], getenv, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "refkeeper: unknown command %q (try 'refkeeper help')\n", args[0])
	return exitUsage
}
