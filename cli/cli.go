package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/refkeeper/refkeeper/client"
)

// Defaults of the API commands' connection flags.
const (
	defaultAPIURL     = "http://127.0.0.1:8080"
	defaultAttempts   = 5
	defaultRetryDelay = time.Second
	defaultMaxDelay   = 30 * time.Second
)

// cli is what every API command gets from run.
type cli struct {
	name           string // "refkeeper pin"
	getenv         func(string) string
	stdout, stderr io.Writer
}

// usageError is a command line the command cannot run: exit status 2
// with one line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// goneError is a pin that no longer exists: exit status 3.
type goneError struct{ msg string }

func (e *goneError) Error() string { return e.msg }

// apiFlags are the flags every API command shares. The token never comes
// from argv (other users of the machine can read it there): it is
// REFKEEPER_TOKEN, or the first line of --token-file.
type apiFlags struct {
	url        string
	tokenFile  string
	json       bool
	attempts   int
	retryDelay time.Duration
	maxDelay   time.Duration
}

func (c *cli) flagSet(usageLine string, af *apiFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: %s\n\nflags:\n", usageLine)
		fs.PrintDefaults()
	}
	url := c.getenv("REFKEEPER_URL")
	if url == "" {
		url = defaultAPIURL
	}
	fs.StringVar(&af.url, "url", url, "the service's base URL (env REFKEEPER_URL)")
	fs.StringVar(&af.tokenFile, "token-file", "", "read the API token from this file (default: env REFKEEPER_TOKEN)")
	fs.BoolVar(&af.json, "json", false, "print the API's JSON instead of a table")
	fs.IntVar(&af.attempts, "attempts", defaultAttempts, "attempts per request, retries of transient failures included")
	fs.DurationVar(&af.retryDelay, "retry-delay", defaultRetryDelay, "pause before the first retry; doubles per retry")
	fs.DurationVar(&af.maxDelay, "max-delay", defaultMaxDelay, "longest pause between retries, also when the server asks for more")
	return fs
}

// parseArgs parses flags wherever they stand among the positional
// arguments (`pin group/app 7 --sha X`) and checks the count of the latter.
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) != want {
		fs.Usage()
		return nil, usagef("want %d arguments, got %d", want, len(pos))
	}
	return pos, nil
}

// token reads the API token: --token-file wins over REFKEEPER_TOKEN.
func (c *cli) token(af *apiFlags) (string, error) {
	if af.tokenFile != "" {
		b, err := os.ReadFile(af.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading the token file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if t := strings.TrimSpace(line); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("token file %s is empty", af.tokenFile)
	}
	if t := strings.TrimSpace(c.getenv("REFKEEPER_TOKEN")); t != "" {
		return t, nil
	}
	return "", usagef("no API token: set REFKEEPER_TOKEN or --token-file")
}

// client builds the API client with token; every retry it makes is
// printed.
func (c *cli) client(af *apiFlags, token string) (*client.Client, error) {
	if af.attempts < 1 {
		return nil, usagef("--attempts must be at least 1")
	}
	cl, err := client.New(client.Options{
		BaseURL: af.url, Token: token,
		MaxAttempts: af.attempts, BaseDelay: af.retryDelay, MaxDelay: af.maxDelay,
		OnRetry: func(e client.RetryEvent) {
			fmt.Fprintf(c.stderr, "%s: %s %s failed (attempt %d of %d): %s; retrying in %v\n",
				c.name, e.Method, e.Path, e.Attempt, af.attempts, retryReason(e.Err), e.Delay.Round(time.Millisecond))
		},
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return cl, nil
}

// retryReason is the short cause of a retry, for one line of output.
func retryReason(err error) string {
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		s := fmt.Sprintf("%d %s", apiErr.Status, apiErr.Code)
		if apiErr.RetryAfter > 0 {
			s += fmt.Sprintf(" (Retry-After %v)", apiErr.RetryAfter)
		}
		return s
	}
	var connErr *client.ConnectionError
	if errors.As(err, &connErr) {
		return "connection failed: " + connErr.Err.Error()
	}
	return err.Error()
}

// finish prints err (if any) as one line and answers the exit status.
func (c *cli) finish(err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
	var (
		usage *usageError
		gone  *goneError
	)
	switch {
	case errors.As(err, &usage):
		return ExitUsage
	case errors.As(err, &gone), errors.Is(err, client.CodePinNotFound):
		return ExitGone
	}
	return ExitError
}

// positiveID reads a pipeline id or merge request iid argument.
func positiveID(what, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != s {
		return 0, usagef("%s must be an integer from 1 to 9223372036854775807, not %q", what, s)
	}
	return n, nil
}

// printJSON writes v as indented JSON, for scripts (jq and the like).
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash[T any](p *T, format func(T) string) string {
	if p == nil {
		return "-"
	}
	return format(*p)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// printPin prints one pin for people, one field a line. The fetch token
// is left out of the table (it is a secret, and terminals end up in logs);
// --json has it for the scripts that hand it to jobs.
func (c *cli) printPin(p *client.Pin, af *apiFlags, extra ...[2]string) error {
	if af.json {
		return c.printJSON(p)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	rows := [][2]string{
		{"project", p.Project},
		{"pipeline", strconv.FormatInt(p.PipelineID, 10)},
		{"state", string(p.State)},
		{"sha", p.SHA},
		{"ref", p.Ref},
		{"merge request", orDash(p.MergeRequestIID, func(n int64) string { return strconv.FormatInt(n, 10) })},
		{"created", formatTime(p.CreatedAt)},
		{"finished", orDash(p.FinishedAt, formatTime)},
		{"expires", orDash(p.ExpiresAt, formatTime)},
		{"fetch url", p.FetchURL},
		{"refspec", p.Refspec},
	}
	if p.Merge != nil {
		rows = append(rows, [2]string{"merge", fmt.Sprintf("%s of %s into %s", p.Merge.Mode, p.Merge.SourceSHA, p.Merge.TargetSHA)})
	}
	rows = append(rows, extra...)
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
	}
	return w.Flush()
}

// printPins prints pins for people, one a line.
func (c *cli) printPins(pins []client.Pin) error {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PIPELINE\tSTATE\tSHA\tMR\tCREATED\tEXPIRES")
	for _, p := range pins {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", p.PipelineID, p.State, p.SHA,
			orDash(p.MergeRequestIID, func(n int64) string { return strconv.FormatInt(n, 10) }),
			formatTime(p.CreatedAt), orDash(p.ExpiresAt, formatTime))
	}
	return w.Flush()
}

// apiCommand is the body of one API command, run with its parsed client.
type apiCommand func(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, pos []string) error

// runAPICommand parses flags (defined by define, on top of the shared
// ones), builds the client and runs body.
func runAPICommand(ctx context.Context, c *cli, args []string, usageLine string, nargs int,
	define func(*flag.FlagSet), body apiCommand) int {
	var af apiFlags
	fs := c.flagSet(usageLine, &af)
	if define != nil {
		define(fs)
	}
	pos, err := parseArgs(fs, args, nargs)
	if err != nil {
		return c.finish(err)
	}
	token, err := c.token(&af)
	if err != nil {
		return c.finish(err)
	}
	cl, err := c.client(&af, token)
	if err != nil {
		return c.finish(err)
	}
	return c.finish(body(ctx, c, cl, &af, pos))
}

func (c *cli) stderrf(format string, args ...any) { fmt.Fprintf(c.stderr, format, args...) }
