package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/refkeeper/refkeeper/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	// The first signal cancels the command (git gets SIGTERM and removes
	// its locks); a second one ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: refkeeper <command> [flags]

commands:
` + cli.Usage + `  version   print the version

This is the job binary: it has no serve (the server image has).
` + cli.UsageFooter

// run executes one command and answers the process exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "serve":
		fmt.Fprintln(stderr, "refkeeper: serve is not in the job binary (it has the client commands only): run the server's binary or image")
		return cli.ExitUsage
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "refkeeper %s (%s, job binary: client commands, no cgo)\n", version, runtime.Version())
		return cli.ExitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	}
	return cli.Run(ctx, args[0], args[1:], getenv, stdout, stderr)
}
