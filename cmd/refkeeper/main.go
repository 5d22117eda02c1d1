package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/refkeeper/refkeeper/cli"
	"github.com/refkeeper/refkeeper/packcache"
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

var usage = `usage: refkeeper <command> [flags]

commands:
  serve     run the HTTP API, task workers and GC scheduler
` + cli.Usage + `  version   print the version

` + cli.UsageFooter

// run executes one command and answers the process exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	case packcache.HookCommand:
		// git upload-pack runs this binary as its pack-objects hook
		// (package packcache); not a command for people.
		return packcache.RunHook(ctx, args[1:], getenv, os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	// The client commands, and the one line of an unknown command, are
	// package cli's, as in the job binary.
	return cli.Run(ctx, args[0], args[1:], getenv, stdout, stderr)
}
