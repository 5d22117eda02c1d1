package gitops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

var upstreamCredential = &Credential{Username: testdata.UpstreamUser, Password: testdata.UpstreamPassword}

// stagedMirror stages an empty mirror of u under a new root.
func stagedMirror(t *testing.T, u *testdata.Upstream) (*Root, ProjectName) {
	t.Helper()
	root := &Root{Dir: t.TempDir()}
	t.Cleanup(root.Close)
	name := ProjectName("group/app")
	if created, err := root.Stage(context.Background(), name, MirrorConfig{Upstream: u.URL(), Host: "github"}); err != nil || !created {
		t.Fatalf("Stage: created=%v err=%v", created, err)
	}
	return root, name
}

// refAt reads a ref of a repository with the git CLI.
func refAt(t *testing.T, dir, ref string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", dir, "rev-parse", "--verify", "--quiet", ref).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// dumpingGit is a git that appends the argv and the whole environment of
// every git process it starts to dump, and turns GIT_TRACE on into the same
// file, so that every process git itself starts (the remote helper, the
// credential helper) is there with its arguments too.
func dumpingGit(t *testing.T) (bin, dump string) {
	t.Helper()
	dir := t.TempDir()
	dump = filepath.Join(dir, "dump")
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "git")
	script := fmt.Sprintf("#!/bin/sh\n{ echo \"argv: $0 $*\"; echo env:; env; } >>%q\nGIT_TRACE=%q\nexport GIT_TRACE\nexec %q \"$@\"\n", dump, dump, real)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dump
}

func TestFetchHandsTheCredentialToGitOnlyThroughAPipe(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	bin, dump := dumpingGit(t)
	root.GitBinary = bin
	err := root.FetchStaged(context.Background(), name, Upstream{URL: u.URL(), Credential: upstreamCredential},
		CloneRefspecs("+refs/pull/*:refs/pull/*"))
	if err != nil {
		t.Fatalf("FetchStaged: %v", err)
	}
	dir := root.stagingPath(name)
	if got := refAt(t, dir, "refs/pull/1/merge"); got != u.Merge {
		t.Errorf("refs/pull/1/merge = %q, want %s", got, u.Merge)
	}
	if got := refAt(t, dir, "refs/heads/main"); got != u.Second {
		t.Errorf("refs/heads/main = %q, want %s", got, u.Second)
	}
	if got := refAt(t, dir, "refs/merge-requests/1/merge"); got != "" {
		t.Errorf("a fetch of refs/pull/* also wrote refs/merge-requests/1/merge (%s)", got)
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	// The dump must show what it claims to: git's environment, the fetch,
	// and the credential helper being run (so the password did go to git,
	// and went through the helper).
	for _, want := range []string{"env:", "GIT_TERMINAL_PROMPT=0", " fetch ", "remote-http", "cat <&3", "get"} {
		if !strings.Contains(text, want) {
			t.Errorf("the dump lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, testdata.UpstreamPassword) {
		t.Errorf("the password reached a git process's argv or environment:\n%s", text)
	}
	if u.Fetches() != 1 {
		t.Errorf("upstream served %d fetches, want 1", u.Fetches())
	}
}

func TestFetchClassifiesFailures(t *testing.T) {
	cases := []struct {
		name  string
		setup func(u *testdata.Upstream) (Upstream, []string, time.Duration)
		check func(t *testing.T, err error)
	}{
		{"wrong password", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.URL(), Credential: &Credential{Username: testdata.UpstreamUser, Password: "wrong"}},
				CloneRefspecs(), time.Minute
		}, isErr[*UpstreamRejectedError]},
		{"no credential", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.URL()}, CloneRefspecs(), time.Minute
		}, isErr[*UpstreamRejectedError]},
		{"no such repository", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.BaseURL() + "/group/none.git", Credential: upstreamCredential}, CloneRefspecs(), time.Minute
		}, isErr[*UpstreamRejectedError]},
		{"no such file repository", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: "file://" + filepath.Join(os.TempDir(), "refkeeper-none.git")}, CloneRefspecs(), time.Minute
		}, isErr[*UpstreamRejectedError]},
		{"stopped", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			u.Stop()
			return Upstream{URL: u.URL(), Credential: upstreamCredential}, CloneRefspecs(), time.Minute
		}, isErr[*UpstreamUnavailableError]},
		{"stalled past the timeout", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			u.Stall()
			return Upstream{URL: u.URL(), Credential: upstreamCredential}, CloneRefspecs(), 500 * time.Millisecond
		}, isErr[*UpstreamUnavailableError]},
		{"missing ref", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.URL(), Credential: upstreamCredential},
				[]string{"+refs/pull/9/merge:refs/pull/9/merge"}, time.Minute
		}, func(t *testing.T, err error) {
			var nf *UpstreamRefNotFoundError
			if !errors.As(err, &nf) || nf.Ref != "refs/pull/9/merge" {
				t.Fatalf("err = %v, want UpstreamRefNotFoundError for refs/pull/9/merge", err)
			}
		}},
		{"missing sha", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.URL(), Credential: upstreamCredential},
				[]string{"1f3e000000000000000000000000000000000001"}, time.Minute
		}, func(t *testing.T, err error) {
			var nf *UpstreamRefNotFoundError
			if !errors.As(err, &nf) || nf.Ref != "1f3e000000000000000000000000000000000001" {
				t.Fatalf("err = %v, want UpstreamRefNotFoundError for the SHA", err)
			}
		}},
		{"into refs/pipelines", func(u *testdata.Upstream) (Upstream, []string, time.Duration) {
			return Upstream{URL: u.URL(), Credential: upstreamCredential},
				[]string{"+refs/heads/main:refs/pipelines/7"}, time.Minute
		}, isErr[*InvalidRefspecError]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := testdata.StartUpstream(t)
			root, name := stagedMirror(t, u)
			up, specs, timeout := tc.setup(u)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			err := root.FetchStaged(ctx, name, up, specs)
			tc.check(t, err)
			if err != nil && strings.Contains(err.Error(), testdata.UpstreamPassword) {
				t.Errorf("the error shows the password: %v", err)
			}
			if refs := refAt(t, root.stagingPath(name), "refs/heads/main"); refs != "" {
				t.Errorf("a failed fetch wrote refs/heads/main")
			}
		})
	}
}

func isErr[T error](t *testing.T, err error) {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("err = %v (%T), want %T", err, err, target)
	}
}

func TestFetcherCoalescesConcurrentCallers(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	dir := root.stagingPath(name)
	f := &Fetcher{Root: root}
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	// The first fetch hangs at the upstream while the others arrive, so
	// that they all queue behind it whatever the scheduler does.
	u.Stall()
	const callers = 30
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	call := func(spec string) {
		defer wg.Done()
		errs <- f.Fetch(context.Background(), dir, up, []string{spec})
	}
	wg.Add(1)
	go call("+refs/heads/main:refs/heads/main")
	waitFor(t, "the first fetch to reach the upstream", func() bool { return u.Stalled() > 0 })
	for i := 1; i < callers; i++ {
		wg.Add(1)
		spec := "+refs/pull/1/merge:refs/pull/1/merge"
		if i%2 == 0 {
			spec = "+refs/heads/feature:refs/heads/feature"
		}
		go call(spec)
	}
	waitFor(t, "every caller to queue", func() bool { n, _ := f.Queued(dir); return n == callers-1 })
	u.Release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Fetch: %v", err)
		}
	}
	if got := u.Fetches(); got > 2 {
		t.Errorf("%d concurrent callers caused %d upstream fetches, want at most 2", callers, got)
	}
	for ref, want := range map[string]string{"refs/heads/main": u.Second, "refs/heads/feature": u.Head, "refs/pull/1/merge": u.Merge} {
		if got := refAt(t, dir, ref); got != want {
			t.Errorf("%s = %q, want %s", ref, got, want)
		}
	}
}

func TestFetcherFailsOnlyTheCallerOfAMissingRef(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	dir := root.stagingPath(name)
	f := &Fetcher{Root: root}
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	u.Stall()
	first := make(chan error, 1)
	go func() { first <- f.Fetch(context.Background(), dir, up, []string{"+refs/heads/main:refs/heads/main"}) }()
	waitFor(t, "the first fetch to reach the upstream", func() bool { return u.Stalled() > 0 })
	missing, present := make(chan error, 1), make(chan error, 1)
	go func() {
		missing <- f.Fetch(context.Background(), dir, up, []string{"+refs/pull/9/merge:refs/pull/9/merge"})
	}()
	go func() {
		present <- f.Fetch(context.Background(), dir, up, []string{"+refs/pull/1/merge:refs/pull/1/merge"})
	}()
	waitFor(t, "both callers to queue", func() bool { n, _ := f.Queued(dir); return n == 2 })
	u.Release()
	if err := <-first; err != nil {
		t.Fatalf("first: %v", err)
	}
	var nf *UpstreamRefNotFoundError
	if err := <-missing; !errors.As(err, &nf) {
		t.Errorf("the caller of a missing ref got %v, want UpstreamRefNotFoundError", err)
	}
	if err := <-present; err != nil {
		t.Errorf("the caller sharing the batch got %v, want its ref", err)
	}
	if got := refAt(t, dir, "refs/pull/1/merge"); got != u.Merge {
		t.Errorf("refs/pull/1/merge = %q, want %s", got, u.Merge)
	}
}

// waitFor polls cond until it holds; it waits for a state, not for a time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckRefspec(t *testing.T) {
	for spec, ok := range map[string]bool{
		"+refs/heads/*:refs/heads/*":               true,
		"refs/pull/1/merge:refs/pull/1/merge":      true,
		"1f3e000000000000000000000000000000000001": true,
		"+refs/heads/main:refs/pipelines/1":        false,
		"+refs/heads/*:refs/pipelines/*":           false,
		"refs/heads/main":                          false,
		"--upload-pack=evil":                       false,
		"+refs/heads/main:refs/heads/x y":          false,
		"+refs/pipelines/1:refs/heads/pipeline":    true, // reading it is harmless
	} {
		if err := checkRefspec(spec); (err == nil) != ok {
			t.Errorf("checkRefspec(%q) = %v, want ok=%v", spec, err, ok)
		}
	}
}

// authRecorder is an HTTP server that asks for basic auth and keeps every
// Authorization header it was sent.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if h := r.Header.Get("Authorization"); h != "" {
		a.seen = append(a.seen, h)
	}
	a.mu.Unlock()
	w.Header().Set("WWW-Authenticate", `Basic realm="other"`)
	w.WriteHeader(http.StatusUnauthorized)
}

func (a *authRecorder) headers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

// An upstream's credential goes to the upstream's host only: an upstream
// that redirects to another host does not get it sent there.
func TestCredentialStaysWithItsHost(t *testing.T) {
	other := &authRecorder{}
	otherSrv := httptest.NewServer(other)
	t.Cleanup(otherSrv.Close)
	// The same server under another name: a host the credential is not for.
	otherURL := strings.Replace(otherSrv.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherURL+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(redirector.Close)

	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	err := root.FetchStaged(context.Background(), name, Upstream{URL: redirector.URL + "/group/app.git", Credential: upstreamCredential},
		CloneRefspecs("+refs/pull/*:refs/pull/*"))
	if err == nil {
		t.Fatal("a fetch redirected to a host that refuses succeeded")
	}
	if seen := other.headers(); len(seen) > 0 {
		t.Errorf("the credential went to the host the upstream redirected to: %q", seen)
	}

	// The control: asked by the upstream's own host, the credential is sent.
	err = root.FetchStaged(context.Background(), name, Upstream{URL: otherURL + "/group/app.git", Credential: upstreamCredential},
		CloneRefspecs("+refs/pull/*:refs/pull/*"))
	if err == nil {
		t.Fatal("a fetch from a host that refuses every credential succeeded")
	}
	if len(other.headers()) == 0 {
		t.Error("the credential was not sent to its own upstream's host")
	}
}

// git connects to the addresses it is handed (http.curloptResolve), not to
// what it would look up itself: a name no resolver knows reaches the
// upstream through its pinned address. A redirect is not followed and is
// its own error.
func TestFetchUsesThePinnedResolutionAndNoRedirect(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	port := u.BaseURL()[strings.LastIndexByte(u.BaseURL(), ':')+1:]
	pinned := Upstream{
		URL:        "http://refkeeper-pinned.invalid:" + port + "/" + testdata.UpstreamProject + ".git",
		Credential: upstreamCredential,
		Resolve:    []string{"refkeeper-pinned.invalid:" + port + ":127.0.0.1"},
	}
	if err := root.FetchStaged(context.Background(), name, pinned, CloneRefspecs()); err != nil {
		t.Fatalf("fetch through the pinned address: %v", err)
	}
	if u.Fetches() != 1 {
		t.Errorf("the upstream served %d fetches, want 1", u.Fetches())
	}
	unpinned := pinned
	unpinned.Resolve = nil
	var unavail *UpstreamUnavailableError
	if err := root.FetchStaged(context.Background(), name, unpinned, CloneRefspecs()); !errors.As(err, &unavail) {
		t.Errorf("without the pin the name resolved: %v", err)
	}

	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, u.BaseURL()+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	t.Cleanup(redirector.Close)
	before := u.Fetches() + u.Refused()
	var redirect *UpstreamRedirectError
	err := root.FetchStaged(context.Background(), name, Upstream{URL: redirector.URL + "/" + testdata.UpstreamProject + ".git"}, CloneRefspecs())
	if !errors.As(err, &redirect) {
		t.Errorf("a redirecting upstream: %v, want UpstreamRedirectError", err)
	}
	if n := u.Fetches() + u.Refused() - before; n != 0 {
		t.Errorf("the redirect was followed: the target saw %d requests", n)
	}
}
