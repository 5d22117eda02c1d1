package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

func apiClient(tb testing.TB, base string) *client.Client {
	tb.Helper()
	c, err := client.New(client.Options{BaseURL: base, Token: testToken})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// pinEnv is what an orchestrator hands a job from the pin.
func pinEnv(p *client.Pin) map[string]string {
	return map[string]string{
		"REFKEEPER_FETCH_URL": p.FetchURL, "REFKEEPER_REFSPEC": p.Refspec,
		"REFKEEPER_SHA": p.SHA, "REFKEEPER_FETCH_TOKEN": *p.FetchToken,
	}
}

// spyHooks installs hooks in a new repository at dir that record the
// environment and the command line of the git processes that run them: the
// reference-transaction hook runs under `git fetch`, post-checkout under
// `git checkout`.
func spyHooks(tb testing.TB, dir string) (log string) {
	tb.Helper()
	if out, err := testdata.RunnerGit(tb, tb.TempDir(), "init", "-q", dir); err != nil {
		tb.Fatal(out)
	}
	log = filepath.Join(tb.TempDir(), "hooks.log")
	script := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\n{ echo \"== $0\"; env; tr '\\0' ' ' </proc/$PPID/cmdline; echo; } >>%s\n", log)
	for _, h := range []string{"reference-transaction", "post-checkout"} {
		if err := os.WriteFile(filepath.Join(dir, ".git", "hooks", h), []byte(script), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return log
}

// TestCheckout: a job's checkout end to end with the real server and the
// real git: the pinned SHA checked out; after DELETE, exit 3 and one line;
// the fetch token in neither git's environment nor its command line.
func TestCheckout(t *testing.T) {
	s := startPinnedServer(t, "")
	root, p, r, srv, api := s.root, s.p, s.r, s.srv, s.api
	pin := s.pin(t, 7, client.PinRequest{SHA: p.First})
	env := pinEnv(pin)

	// As in a job, where the orchestrator or the runner put them in the
	// environment: git must not inherit them.
	t.Setenv("REFKEEPER_FETCH_TOKEN", *pin.FetchToken)
	t.Setenv("REFKEEPER_ID_TOKEN", "the-jobs-id-token-0123456789")
	t.Setenv(envActionsRequestToken, "the-runtimes-request-token-0123456789")
	dir := filepath.Join(t.TempDir(), "work")
	hooks := spyHooks(t, dir)
	// The spy's repository is not checkout's own: --force.
	code, out, errOut := cliRun(t, env, nil, "checkout", dir, "--force")
	if code != 0 || testdata.HeadOf(t, dir) != p.First || !strings.Contains(out, "HEAD is "+p.First) {
		t.Fatalf("checkout = %d\n%s%s", code, out, errOut)
	}
	spied, err := os.ReadFile(hooks)
	if err != nil {
		t.Fatalf("the hooks did not run: %v", err)
	}
	if !strings.Contains(string(spied), "== .git/hooks/reference-transaction") || !strings.Contains(string(spied), "fetch") {
		t.Fatalf("the fetch's hook did not run:\n%s", spied)
	}
	if strings.Contains(string(spied), *pin.FetchToken) || strings.Contains(out+errOut, *pin.FetchToken) {
		t.Fatal("the fetch token reached git's environment or command line, or the output")
	}
	for _, secret := range []string{"the-jobs-id-token-0123456789", "the-runtimes-request-token-0123456789"} {
		if strings.Contains(string(spied), secret) {
			t.Fatalf("%s reached git's environment", secret)
		}
	}
	// Again in the same directory (a retried job on the same runner).
	if code, _, errOut := cliRun(t, env, nil, "checkout", dir); code != 0 || testdata.HeadOf(t, dir) != p.First {
		t.Fatalf("second checkout = %d %s", code, errOut)
	}

	// A SHA that is not what the ref holds: verified, exit 1.
	bad := pinEnv(pin)
	bad["REFKEEPER_SHA"] = p.Second
	if code, _, errOut := cliRun(t, bad, nil, "checkout", filepath.Join(t.TempDir(), "w")); code != ExitError || !strings.Contains(errOut, "not the pinned "+p.Second) {
		t.Fatalf("checkout of another SHA = %d %s", code, errOut)
	}

	if err := api.DeletePin(t.Context(), "group/app", 7); err != nil {
		t.Fatal(err)
	}
	oneLine := regexp.MustCompile(`^refkeeper checkout: refs/pipelines/7 is gone \(.+\): re-pin before retrying this job\n$`)
	code, _, errOut = cliRun(t, env, nil, "checkout", filepath.Join(t.TempDir(), "w"))
	if code != ExitGone || !oneLine.MatchString(errOut) || !strings.Contains(errOut, "fetch token was refused") {
		t.Fatalf("checkout with the token of a deleted pin = %d %q", code, errOut)
	}
	// With an API token the ref's absence shows as git's own message.
	withAPIToken := pinEnv(pin)
	withAPIToken["REFKEEPER_FETCH_TOKEN"] = testToken
	code, _, errOut = cliRun(t, withAPIToken, nil, "checkout", filepath.Join(t.TempDir(), "w"))
	if code != ExitGone || !oneLine.MatchString(errOut) || !strings.Contains(errOut, "couldn't find remote ref refs/pipelines/7") {
		t.Fatalf("checkout of a deleted ref with an API token = %d %q", code, errOut)
	}

	// Looked up by project and pipeline with the API token.
	lookup := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}
	if _, _, err := api.Pin(t.Context(), "group/app", 8, client.PinRequest{MergeRequestIID: &[]int64{12}[0]}); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "w")
	if code, _, errOut := cliRun(t, lookup, nil, "checkout", dir, "--project", "group/app", "--pipeline", "8"); code != 0 || testdata.HeadOf(t, dir) != p.Merge {
		t.Fatalf("checkout --project --pipeline = %d %s", code, errOut)
	}
	if err := api.DeletePin(t.Context(), "group/app", 8); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = cliRun(t, lookup, nil, "checkout", filepath.Join(t.TempDir(), "w"), "--project", "group/app", "--pipeline", "8")
	if code != ExitGone || !strings.HasSuffix(errOut, "re-pin before retrying this job\n") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("checkout --project of a deleted pin = %d %q", code, errOut)
	}
	code, _, errOut = cliRun(t, lookup, nil, "checkout", filepath.Join(t.TempDir(), "w"), "--project", "group/app", "--pipeline", "77")
	if code != ExitGone || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("checkout --project of a pipeline never pinned = %d %q", code, errOut)
	}

	// A pin that comes while the job waits for it (the webhook was late):
	// made from the output hook, when the first wait is printed.
	stderr := &hookWriter{match: "no pin for pipeline 9 yet", fire: func() {
		if _, _, err := api.Pin(context.Background(), "group/app", 9, client.PinRequest{SHA: p.Second}); err != nil {
			t.Error(err)
		}
	}}
	dir = filepath.Join(t.TempDir(), "w")
	code, _, errOut = cliRun(t, lookup, stderr, "checkout", dir, "--project", "group/app", "--pipeline", "9", "--wait-for-pin", "1m", "--retry-delay", "10ms")
	if code != 0 || testdata.HeadOf(t, dir) != p.Second {
		t.Fatalf("checkout --wait-for-pin = %d %s", code, errOut)
	}

	// A pin waited for and never made: the job is told it was never
	// created (exit 1), not that it is gone (exit 3, "re-pin").
	code, _, errOut = cliRun(t, lookup, nil, "checkout", filepath.Join(t.TempDir(), "w"), "--project", "group/app", "--pipeline", "78",
		"--wait-for-pin", "50ms", "--retry-delay", "10ms")
	if last := errOut[strings.LastIndex(strings.TrimSuffix(errOut, "\n"), "\n")+1:]; code != ExitError ||
		!strings.Contains(last, "no pin for pipeline 78 of group/app was ever created") || strings.Contains(errOut, "gone") || strings.Contains(errOut, "re-pin") {
		t.Fatalf("checkout --wait-for-pin of a pin never made = %d %q", code, errOut)
	}

	// A live pin whose token the fetch URL's server refuses (a replica
	// with other fetch token keys) is no gone pin: exit 1.
	other := startServer(t, "--repos", root, "--redis", r.URL(), "--fetch-token-keys", "another-key-0123456789abcdef")
	skewed := startServer(t, "--repos", root, "--redis", r.URL(), "--fetch-token-keys", "the-first-key-0123456789abcd", "--fetch-url", other.Base)
	if _, _, err := apiClient(t, skewed.Base).Pin(t.Context(), "group/app", 10, client.PinRequest{SHA: p.First}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = cliRun(t, map[string]string{"REFKEEPER_URL": skewed.Base, "REFKEEPER_TOKEN": testToken}, nil,
		"checkout", filepath.Join(t.TempDir(), "w"), "--project", "group/app", "--pipeline", "10")
	if code != ExitError || !strings.Contains(errOut, "although the pin is live") {
		t.Fatalf("checkout with a token the fetch server refuses = %d %s", code, errOut)
	}

	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{}, nil},
		{lookup, []string{"--project", "group/app"}},
		{map[string]string{"REFKEEPER_FETCH_URL": "http://job:secret@127.0.0.1/git/group/app.git", "REFKEEPER_REFSPEC": pin.Refspec, "REFKEEPER_SHA": p.First, "REFKEEPER_FETCH_TOKEN": "t"}, nil},
		{map[string]string{"REFKEEPER_FETCH_URL": pin.FetchURL, "REFKEEPER_REFSPEC": "main", "REFKEEPER_SHA": p.First, "REFKEEPER_FETCH_TOKEN": "t"}, nil},
	} {
		if code, _, errOut := cliRun(t, tc.env, nil, append([]string{"checkout", t.TempDir()}, tc.args...)...); code != ExitUsage {
			t.Errorf("checkout %v with %v = %d %s", tc.args, tc.env, code, errOut)
		}
	}
}

// freezeRedis stops the redis-server process (SIGSTOP): it keeps its data
// but answers nothing, so the service answers 503, until thaw.
func freezeRedis(tb testing.TB, r *testdata.Redis) (thaw func()) {
	tb.Helper()
	info, err := r.Client(tb).Info(context.Background(), "server").Result()
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`process_id:(\d+)`).FindStringSubmatch(info)
	if m == nil {
		tb.Fatalf("no process_id in INFO:\n%s", info)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
	thawed := false
	thaw = func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	tb.Cleanup(thaw)
	return thaw
}

// TestCheckoutRetries: transient failures are retried, each retry printed,
// and the checkout ends 0: a server answering 503 (its Redis frozen) to
// git's fetch and to the pin's lookup, and a lock held in the work tree.
// Each fault is lifted from the output hook, when the first retry is
// printed.
func TestCheckoutRetries(t *testing.T) {
	s := startPinnedServer(t, "?dial_timeout=300ms&read_timeout=300ms&write_timeout=300ms")
	p, r, srv := s.p, s.r, s.srv
	pin := s.pin(t, 7, client.PinRequest{SHA: p.First})
	fast := []string{"--retry-delay", "10ms", "--max-delay", "50ms", "--attempts", "20"}

	t.Run("503 to git's fetch", func(t *testing.T) {
		thaw := freezeRedis(t, r)
		stderr := &hookWriter{match: "retrying in", fire: thaw}
		dir := filepath.Join(t.TempDir(), "w")
		code, _, errOut := cliRun(t, pinEnv(pin), stderr, append([]string{"checkout", dir}, fast...)...)
		if code != 0 || testdata.HeadOf(t, dir) != p.First {
			t.Fatalf("checkout = %d\n%s", code, errOut)
		}
		if !strings.Contains(errOut, "attempt 1 of 20 failed, transient:") || !strings.Contains(errOut, "503") {
			t.Fatalf("the retry was not printed:\n%s", errOut)
		}
		t.Logf("printed:\n%s", errOut)
	})

	t.Run("503 to the pin's lookup", func(t *testing.T) {
		thaw := freezeRedis(t, r)
		stderr := &hookWriter{match: "retrying in", fire: thaw}
		dir := filepath.Join(t.TempDir(), "w")
		lookup := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}
		code, _, errOut := cliRun(t, lookup, stderr, append([]string{"checkout", dir, "--project", "group/app", "--pipeline", "7"}, fast...)...)
		if code != 0 || testdata.HeadOf(t, dir) != p.First {
			t.Fatalf("checkout = %d\n%s", code, errOut)
		}
		if !strings.Contains(errOut, "GET /api/v1/projects/group%2Fapp/pipelines/7/ref failed (attempt 1 of 20): 503 unavailable") {
			t.Fatalf("the client's retry was not printed:\n%s", errOut)
		}
		t.Logf("printed:\n%s", errOut)
	})

	t.Run("a lock in the work tree", func(t *testing.T) {
		// A retried job on the same runner: the work tree of an earlier
		// checkout, where something holds the index's lock.
		dir := filepath.Join(t.TempDir(), "w")
		if code, _, errOut := cliRun(t, pinEnv(pin), nil, "checkout", dir); code != 0 {
			t.Fatalf("first checkout = %d %s", code, errOut)
		}
		lock := filepath.Join(dir, ".git", "index.lock")
		if err := os.WriteFile(lock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		stderr := &hookWriter{match: "retrying in", fire: func() { os.Remove(lock) }}
		code, _, errOut := cliRun(t, pinEnv(pin), stderr, append([]string{"checkout", dir}, fast...)...)
		if code != 0 || testdata.HeadOf(t, dir) != p.First || !strings.Contains(errOut, "index.lock': File exists") {
			t.Fatalf("checkout behind a lock = %d\n%s", code, errOut)
		}
	})

	t.Run("attempts run out", func(t *testing.T) {
		// Nothing listens at the fetch URL: connection refused each time.
		gone := pinEnv(pin)
		gone["REFKEEPER_FETCH_URL"] = "http://" + testdata.FreeAddr(t) + "/git/group/app.git"
		code, _, errOut := cliRun(t, gone, nil, "checkout", filepath.Join(t.TempDir(), "w"), "--retry-delay", "1ms", "--max-delay", "2ms", "--attempts", "3")
		if code != ExitError || strings.Count(errOut, "retrying in") != 2 || !strings.Contains(errOut, "gave up after 3 attempts") {
			t.Fatalf("checkout against nothing = %d\n%s", code, errOut)
		}
	})
}
