package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/gitexec"
)

const checkoutUsage = `refkeeper checkout DIR [--project PROJECT --pipeline ID] [--expect-sha SHA] [--force] [flags]

Fetches a pinned ref into DIR (shallow, with the git CLI), checks out its
SHA detached and verifies HEAD. What to fetch comes from REFKEEPER_FETCH_URL,
REFKEEPER_REFSPEC, REFKEEPER_SHA and REFKEEPER_FETCH_TOKEN, as the pin gives
them; or, with --project and --pipeline, from the pin itself, looked up with
the first of: REFKEEPER_TOKEN (or --token-file), the job's ID token
REFKEEPER_ID_TOKEN, an ID token requested from the Actions runtime
(ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN, audience refkeeper).

DIR must be absent, empty, or a work tree an earlier checkout made that has
no local changes (untracked files included); else nothing is touched and
the exit status is 1 (--force overrides). --expect-sha (or
REFKEEPER_EXPECT_SHA) is the job's own commit: unless the pin's sha or its
merge's source_sha is that commit, nothing is fetched, exit status 1.

Transient failures (connection errors, 5xx, 429, a lock) are retried with
backoff, each retry printed. Exit status: 0 when HEAD is the pinned SHA;
3 when the pin is gone (re-pin before retrying the job); 1 on any other
failure; 2 on a bad command line.`

// checkoutTarget is what one job fetches, as a pin gives it.
type checkoutTarget struct {
	fetchURL *url.URL
	refspec  string
	localRef string // the refspec's destination
	sha      string
	// mergeSource is the source_sha of a computed merge's pin (known
	// when the pin was looked up): the job's own commit may be it.
	mergeSource string
	token       string
}

var (
	refspecPattern = regexp.MustCompile(`^\+?(refs/[^:\s]+):(refs/[^:\s]+)$`)
	shaPattern     = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

func newCheckoutTarget(fetchURL, refspec, sha, token string) (*checkoutTarget, error) {
	u, err := url.Parse(fetchURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("fetch URL %q is not an http(s) URL", fetchURL)
	}
	if u.User != nil {
		return nil, usagef("the fetch URL must not carry credentials; the token comes from REFKEEPER_FETCH_TOKEN")
	}
	m := refspecPattern.FindStringSubmatch(refspec)
	if m == nil {
		return nil, usagef("refspec %q is not +refs/…:refs/…", refspec)
	}
	if !shaPattern.MatchString(sha) {
		return nil, usagef("SHA %q is not 40 (or 64) lower-case hex digits", sha)
	}
	if token == "" {
		return nil, usagef("no fetch token")
	}
	return &checkoutTarget{fetchURL: u, refspec: refspec, localRef: m[2], sha: sha, token: token}, nil
}

// checkoutFlags are checkout's own flags besides the API ones.
type checkoutFlags struct {
	project  string
	pipeline int64
	git      string
	// waitForPin is how long a lookup waits for a pin that does not exist
	// yet: a host's webhook may arrive after the job started. 0: not at all.
	waitForPin time.Duration
	expectSHA  string // the job's own commit, which the pin must be or merge
	force      bool   // work in DIR whatever it holds
}

func runCheckout(ctx context.Context, c *cli, args []string) int {
	var (
		af apiFlags
		cf checkoutFlags
	)
	fs := c.flagSet(checkoutUsage, &af)
	fs.StringVar(&cf.project, "project", "", "look the pin up: its project (needs --pipeline and an API token)")
	fs.Int64Var(&cf.pipeline, "pipeline", 0, "look the pin up: its pipeline id")
	fs.StringVar(&cf.git, "git", "git", "the git program")
	fs.DurationVar(&cf.waitForPin, "wait-for-pin", 0, "with --project: wait this long for a pin that does not exist yet (the webhook that makes it may come after the job started)")
	fs.StringVar(&cf.expectSHA, "expect-sha", c.getenv("REFKEEPER_EXPECT_SHA"), "the job's own commit: fetch nothing unless the pin's sha or merge source is it (env REFKEEPER_EXPECT_SHA)")
	fs.BoolVar(&cf.force, "force", false, "work in DIR even if an earlier checkout did not make it or it has local changes, which are lost")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return c.finish(err)
	}
	if af.attempts < 1 {
		return c.finish(usagef("--attempts must be at least 1"))
	}
	if cf.expectSHA = strings.ToLower(strings.TrimSpace(cf.expectSHA)); cf.expectSHA != "" && !shaPattern.MatchString(cf.expectSHA) {
		return c.finish(usagef("--expect-sha %q is not 40 (or 64) hex digits", cf.expectSHA))
	}
	lookup := cf.project != "" || cf.pipeline != 0
	if lookup && (cf.project == "" || cf.pipeline < 1) {
		return c.finish(usagef("--project and --pipeline go together"))
	}
	var (
		target *checkoutTarget
		cl     *client.Client
	)
	if !lookup {
		var missing []string
		for _, name := range []string{"REFKEEPER_FETCH_URL", "REFKEEPER_REFSPEC", "REFKEEPER_SHA", "REFKEEPER_FETCH_TOKEN"} {
			if c.getenv(name) == "" {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return c.finish(usagef("%s not set (or use --project and --pipeline)", strings.Join(missing, ", ")))
		}
		target, err = newCheckoutTarget(c.getenv("REFKEEPER_FETCH_URL"), c.getenv("REFKEEPER_REFSPEC"),
			c.getenv("REFKEEPER_SHA"), c.getenv("REFKEEPER_FETCH_TOKEN"))
		if err != nil {
			return c.finish(err)
		}
	}
	co := &checkout{cli: c, git: cf.git, dir: pos[0], force: cf.force, attempts: af.attempts, delay: af.retryDelay, maxDelay: af.maxDelay}
	if !cf.force {
		// Before the network: a DIR that is not checkout's to use is the
		// job's setup to fix, whatever the pin.
		if err := co.checkDir(ctx); err != nil {
			return c.finish(err)
		}
	}
	if lookup {
		token, err := c.lookupToken(ctx, &af)
		if err != nil {
			return c.finish(err)
		}
		if cl, err = c.client(&af, token); err != nil {
			return c.finish(err)
		}
		if target, err = lookUpTarget(ctx, c, cl, &af, &cf); err != nil {
			var gone *goneError
			if errors.As(err, &gone) {
				return c.gone(fmt.Sprintf("refs/pipelines/%d", cf.pipeline), err)
			}
			return c.finish(err)
		}
	}
	if err := checkExpectedSHA(target, cf.expectSHA); err != nil {
		return c.finish(err)
	}
	co.target = target
	err = co.run(ctx)
	if errors.Is(err, errFetchTokenRefused) && lookup {
		// With the API at hand, tell a deleted pin from a token that is
		// wrong for a pin that lives.
		err = recheckPin(ctx, c, cl, &af, &cf, err)
	}
	var gone *goneError
	if errors.As(err, &gone) || errors.Is(err, errFetchTokenRefused) {
		return c.gone(target.localRef, err)
	}
	if err != nil {
		return c.finish(err)
	}
	fmt.Fprintf(c.stdout, "%s: HEAD is %s (%s from %s)\n", c.name, target.sha, target.localRef, target.fetchURL.Redacted())
	return ExitOK
}

// gone prints the one line of a gone pin and answers its exit status.
func (c *cli) gone(ref string, why error) int {
	fmt.Fprintf(c.stderr, "%s: %s is gone (%v): re-pin before retrying this job\n", c.name, ref, why)
	return ExitGone
}

// expectError is a pin that is not of the job's own commit: exit status
// 1, never retried (asking again gives the same pin).
type expectError struct {
	pinned string // what the pin holds, for the message
	expect string
}

func (e *expectError) Error() string {
	return fmt.Sprintf("the pin is %s, not the job's commit %s (--expect-sha): nothing fetched", e.pinned, e.expect)
}

// checkExpectedSHA holds the pin to the job's own commit, when one is
// expected: the pinned sha itself, or the source of a computed merge.
func checkExpectedSHA(t *checkoutTarget, expect string) error {
	if expect == "" || expect == t.sha || (t.mergeSource != "" && expect == t.mergeSource) {
		return nil
	}
	pinned := t.sha
	if t.mergeSource != "" {
		pinned += " (a merge of " + t.mergeSource + ")"
	}
	return &expectError{pinned: pinned, expect: expect}
}

// lookUpTarget reads the pin through the API; a deleted or absent pin is
// gone.
func lookUpTarget(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, cf *checkoutFlags) (*checkoutTarget, error) {
	pin, err := cl.GetPin(ctx, cf.project, cf.pipeline)
	deadline := time.Now().Add(cf.waitForPin)
	for attempt := 1; errors.Is(err, client.CodePinNotFound) && time.Now().Before(deadline); attempt++ {
		pause := min(backoff(af.retryDelay, af.maxDelay, attempt), time.Until(deadline))
		fmt.Fprintf(c.stderr, "%s: no pin for pipeline %d yet; asking again in %v\n", c.name, cf.pipeline, pause.Round(time.Millisecond))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pin, err = cl.GetPin(ctx, cf.project, cf.pipeline)
	}
	if errors.Is(err, client.CodePinNotFound) && cf.waitForPin > 0 {
		// Waited for and never made: no re-pin can help, as there never
		// was one; whatever should make it (a webhook, the orchestrator)
		// did not. Exit 1, not the gone pin's 3.
		return nil, fmt.Errorf("no pin for pipeline %d of %s was ever created (waited --wait-for-pin %v): nothing fetched; check that the webhook or orchestrator that pins it runs",
			cf.pipeline, cf.project, cf.waitForPin)
	}
	if errors.Is(err, client.CodePinNotFound) {
		return nil, &goneError{msg: fmt.Sprintf("%s has no pin for pipeline %d", cf.project, cf.pipeline)}
	}
	if err != nil {
		return nil, fmt.Errorf("looking up the pin: %w", err)
	}
	if pin.State == client.StateDeleted || pin.FetchToken == nil {
		return nil, &goneError{msg: fmt.Sprintf("the pin of pipeline %d is deleted", cf.pipeline)}
	}
	t, err := newCheckoutTarget(pin.FetchURL, pin.Refspec, pin.SHA, *pin.FetchToken)
	if err == nil && pin.Merge != nil {
		t.mergeSource = pin.Merge.SourceSHA
	}
	return t, err
}

// recheckPin asks the API about a pin whose fetch token git had refused:
// gone if the pin is, else the refusal is the failure.
func recheckPin(ctx context.Context, c *cli, cl *client.Client, af *apiFlags, cf *checkoutFlags, refused error) error {
	now := *cf
	now.waitForPin = 0 // it existed a moment ago
	if _, err := lookUpTarget(ctx, c, cl, af, &now); err != nil {
		return err
	}
	// Not %w: this is no gone pin, and must not exit as one.
	return fmt.Errorf("%v, although the pin is live (does the fetch URL's server sign with another --fetch-token-keys?)", refused)
}

// checkout is one job's fetch and checkout, with its retries.
type checkout struct {
	cli      *cli
	git      string
	dir      string
	force    bool // checkDir was skipped: git checkout -f
	target   *checkoutTarget
	attempts int
	delay    time.Duration
	maxDelay time.Duration
}

// errFetchTokenRefused is git's "Authentication failed" with a fetch token:
// the pin was deleted (or the token is another pin's or was altered).
var errFetchTokenRefused = errors.New("the fetch token was refused")

// gitFailure is a failed git command, with what it printed.
type gitFailure struct {
	args   []string
	output string
	err    error
	class  failureClass
	reason string // the line of output that decided the class
}

func (e *gitFailure) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("git %s: %s", e.args[0], e.reason)
	}
	return fmt.Sprintf("git %s: %v", e.args[0], e.err)
}

type failureClass int

const (
	failurePermanent failureClass = iota
	failureTransient
	failureGone         // couldn't find remote ref
	failureTokenRefused // Authentication failed
)

// What git prints (LC_ALL=C) for each class, checked in this order: a
// retry bot's rules. Gone first: a vanished ref stays vanished however
// often it is fetched.
var gitFailureRules = []struct {
	class   failureClass
	pattern *regexp.Regexp
}{
	{failureGone, regexp.MustCompile(`couldn't find remote ref`)},
	{failureTokenRefused, regexp.MustCompile(`Authentication failed`)},
	{failureTransient, regexp.MustCompile(`(?i)returned error: (5\d\d|429)|HTTP (5\d\d|429)|Failed to connect|Connection refused|Connection reset|Connection timed out|Operation timed out|Could not resolve host|Empty reply from server|transfer closed|early EOF|unexpected disconnect|the remote end hung up unexpectedly|SSL_ERROR_SYSCALL|GnuTLS recv error|\.lock': File exists|cannot lock ref|Unable to create '[^']*\.lock'`)},
}

func classify(output string) (failureClass, string) {
	for _, rule := range gitFailureRules {
		for _, line := range strings.Split(output, "\n") {
			if rule.pattern.MatchString(line) {
				return rule.class, strings.TrimSpace(line)
			}
		}
	}
	return failurePermanent, ""
}

// run tries fetch, checkout and verify until HEAD is the SHA, a failure is
// not transient, or the attempts run out.
func (co *checkout) run(ctx context.Context) error {
	creds, err := startCredentialServer(co.target.fetchURL, co.target.token)
	if err != nil {
		return err
	}
	defer creds.Close()
	for attempt := 1; ; attempt++ {
		err := co.once(ctx, creds)
		var gf *gitFailure
		if err == nil || !errors.As(err, &gf) {
			return err
		}
		switch gf.class {
		case failureGone:
			return &goneError{msg: gf.reason}
		case failureTokenRefused:
			return fmt.Errorf("%w: %v", errFetchTokenRefused, gf)
		case failurePermanent:
			return fmt.Errorf("%w\n%s", gf, indent(gf.output))
		}
		if attempt >= co.attempts {
			return fmt.Errorf("gave up after %d attempts: %w\n%s", attempt, gf, indent(gf.output))
		}
		pause := backoff(co.delay, co.maxDelay, attempt)
		fmt.Fprintf(co.cli.stderr, "%s: attempt %d of %d failed, transient: %s; retrying in %v\n",
			co.cli.name, attempt, co.attempts, gf.reason, pause.Round(time.Millisecond))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the jittered exponential pause after attempt.
func backoff(base, maxDelay time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 30)
	if d <= 0 || d > maxDelay {
		d = maxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// once is one attempt: init, shallow fetch of the refspec, detached
// checkout of the fetched ref, and the check that HEAD is the SHA.
func (co *checkout) once(ctx context.Context, creds *credentialServer) error {
	if err := os.MkdirAll(co.dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", co.dir, err)
	}
	if _, err := co.runGit(ctx, "init", "-q"); err != nil {
		return err
	}
	// Marked before the fetch, so that a retry of a job whose checkout
	// failed half-way may use DIR again.
	if _, err := co.runGit(ctx, "config", "--local", checkoutMark, "true"); err != nil {
		return err
	}
	if _, err := co.runGit(ctx,
		// Only our helper answers for this fetch, and no header of the
		// user's configuration competes with its credentials.
		"-c", "credential.helper=", "-c", "credential.helper="+creds.helper(),
		"-c", "http.extraHeader=",
		"fetch", "--depth=1", "--no-tags", "--no-recurse-submodules", "--quiet",
		co.target.fetchURL.String(), co.target.refspec); err != nil {
		return err
	}
	// Without --force DIR was clean when checked: git's own checks then
	// keep anything that came since, instead of -f throwing it away.
	checkout := []string{"checkout", "-q", "--detach", co.target.localRef}
	if co.force {
		checkout = []string{"checkout", "-q", "-f", "--detach", co.target.localRef}
	}
	if _, err := co.runGit(ctx, checkout...); err != nil {
		return err
	}
	head, err := co.runGit(ctx, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return err
	}
	if head = strings.TrimSpace(head); head != co.target.sha {
		return fmt.Errorf("HEAD is %s after checking out %s, not the pinned %s: a pipeline ref never moves, report this",
			head, co.target.localRef, co.target.sha)
	}
	return nil
}

// runGit runs git in the work tree with an environment that carries no
// refkeeper token (git hands its environment to every program it runs),
// English messages (classify reads them) and no prompts. It is the runner
// side's git, the runner's own settings kept (proxies, certificates): not
// the server's allow list, and no bound but ctx; started as every git
// process is (gitexec.Command), so when ctx ends git and the helpers it
// started (git-remote-http) get SIGTERM together, SIGKILL after a grace.
func (co *checkout) runGit(ctx context.Context, args ...string) (string, error) {
	cmd := gitexec.Command(ctx, gitexec.Process{Git: co.git, Env: gitEnv(os.Environ())}, append([]string{"-C", co.dir}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return out.String(), nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	// args[0] is the subcommand, past the -c options.
	sub := args
	for len(sub) > 1 && sub[0] == "-c" {
		sub = sub[2:]
	}
	class, reason := classify(out.String())
	return "", &gitFailure{args: sub, output: out.String(), err: err, class: class, reason: reason}
}

// gitEnv is environ without refkeeper's secrets and git settings that would
// change what the fetch does or prints.
func gitEnv(environ []string) []string {
	env := make([]string, 0, len(environ)+4)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "REFKEEPER_TOKEN", name == "REFKEEPER_FETCH_TOKEN",
			name == "REFKEEPER_ID_TOKEN", name == envActionsRequestToken,
			name == "LC_ALL", name == "LANG", name == "LANGUAGE", name == "GIT_TERMINAL_PROMPT",
			name == "GIT_DIR", name == "GIT_WORK_TREE", name == "GIT_INDEX_FILE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANGUAGE=", "GIT_TERMINAL_PROMPT=0", "GCM_INTERACTIVE=never")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
