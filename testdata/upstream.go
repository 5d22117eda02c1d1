package testdata

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Upstream credentials that StartUpstream accepts until SetPassword.
const (
	UpstreamUser     = "mirror-bot"
	UpstreamPassword = "s3cret-upstream-password-1f3e"
	// UpstreamProject is the repository an Upstream serves, at URL().
	UpstreamProject = "group/app"
	// UpstreamMergeRequest is the merge request (GitLab) and pull request
	// (GitHub) number of the fixture's refs.
	UpstreamMergeRequest = 1
)

// Upstream is a git host for tests: the real `git http-backend` behind an
// httptest server with HTTP basic auth, serving one bare repository. Its
// repository has main (First, then Second), feature off First (Head), and the
// refs both big hosts keep for merge request 1: GitHub's refs/pull/1/head and
// /merge, GitLab's refs/merge-requests/1/head and /merge, both merge refs at
// Merge. It counts what it serves, and can stop, stall and change its
// password, so that tests see a real outage, a real hang and a real refusal.
type Upstream struct {
	// Repo is the served repository; tests move its refs with Repo.Commit,
	// CreateRefs and SetMergeRequestRef.
	Repo *Repo
	// First and Second are main's commits, Head is feature's tip, Merge the
	// merge of feature into main that both merge refs point at.
	First, Second, Head, Merge string

	srv     *httptest.Server
	handler *cgi.Handler

	mu       sync.Mutex
	password string
	stopped  bool
	stall    chan struct{} // non-nil while stalled; closed to release
	fetches  int           // authorized ref advertisements for upload-pack
	posts    int           // authorized POSTs to git-upload-pack
	refused  int           // requests answered 401
	stalled  int           // requests waiting for Release now
}

// StartUpstream starts an Upstream on a free loopback port; it is stopped
// when the test ends.
func StartUpstream(tb testing.TB) *Upstream {
	tb.Helper()
	GitAvailable(tb)
	gitPath, err := exec.LookPath("git")
	if err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	root := tb.TempDir()
	repo := NewBareRepo(tb, root, UpstreamProject)
	// Hosts serve any reachable commit by SHA (GitLab, Gitea, GitHub all
	// do); protocol v0 needs saying so.
	repo.Git(tb, "config", "uploadpack.allowAnySHA1InWant", "true")
	u := &Upstream{Repo: repo, password: UpstreamPassword}
	u.First = repo.Commit(tb, "main", map[string]string{"app.txt": "v1\n"}, "first")
	repo.Git(tb, "branch", "feature", u.First)
	u.Head = repo.Commit(tb, "feature", map[string]string{"feature.txt": "new\n"}, "feature")
	u.Second = repo.Commit(tb, "main", map[string]string{"app.txt": "v2\n"}, "second")
	u.Merge = repo.Merge(tb, "main", "feature", "Merge feature into main")
	n := strconv.Itoa(UpstreamMergeRequest)
	repo.CreateRefs(tb, map[string]string{
		"refs/pull/" + n + "/head":            u.Head,
		"refs/pull/" + n + "/merge":           u.Merge,
		"refs/merge-requests/" + n + "/head":  u.Head,
		"refs/merge-requests/" + n + "/merge": u.Merge,
	})
	u.handler = &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Root: "/",
		Dir:  root,
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"HOME=" + root,
		},
		InheritEnv: []string{"PATH"},
	}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	tb.Cleanup(u.Stop)
	return u
}

// URL is the clone URL of the served repository, without credentials.
func (u *Upstream) URL() string { return u.srv.URL + "/" + UpstreamProject + ".git" }

// BaseURL is the server's address, http://127.0.0.1:<port>.
func (u *Upstream) BaseURL() string { return u.srv.URL }

// LoopbackUpstreams is the --upstream-allow pattern that lets a service
// under test mirror an Upstream: it is on loopback, which the default
// policy refuses, so every test that mirrors one allows it by name.
const LoopbackUpstreams = "http://127.0.0.1:*"

// CredentialHost is how a credentials file names the Upstream in "hosts":
// http://127.0.0.1:<port> (a credential goes over plain http only to a host
// written so).
func (u *Upstream) CredentialHost() string { return u.srv.URL }

// CredentialsFile writes CredentialsJSON(name, UpstreamPassword) to a file
// of the test's own (mode 0600) and answers its path, for --credentials.
func (u *Upstream) CredentialsFile(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "credentials.json")
	if err := os.WriteFile(path, u.CredentialsJSON(name, UpstreamPassword), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// CredentialsJSON is a credentials file holding the Upstream's user with
// password under name, bound to the Upstream's host.
func (u *Upstream) CredentialsJSON(name, password string) []byte {
	body, _ := json.Marshal(map[string]map[string]any{name: {
		"username": UpstreamUser, "password": password, "hosts": []string{u.CredentialHost()},
	}})
	return body
}

// Fetches counts the fetches served: authorized ref advertisements of
// upload-pack (GET info/refs?service=git-upload-pack), one per `git fetch`,
// `git clone` or `git ls-remote` whatever the protocol version (v2 then
// POSTs git-upload-pack once for ls-refs and once per fetch round).
func (u *Upstream) Fetches() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fetches
}

// UploadPackPosts counts the authorized POSTs to git-upload-pack.
func (u *Upstream) UploadPackPosts() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.posts
}

// Refused counts the requests answered 401 (no or wrong credentials; git
// asks once without any first).
func (u *Upstream) Refused() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.refused
}

// Stalled counts the requests waiting for Release now.
func (u *Upstream) Stalled() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stalled
}

// SetPassword changes the password the upstream accepts from now on.
func (u *Upstream) SetPassword(p string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.password = p
}

// Stall makes every request from now on wait, unanswered, until Release (or
// until the client gives up).
func (u *Upstream) Stall() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stall == nil {
		u.stall = make(chan struct{})
	}
}

// Release answers the stalled requests and stops stalling.
func (u *Upstream) Release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stall != nil {
		close(u.stall)
		u.stall = nil
	}
}

// Stop closes the server: connections are refused from now on. It is safe
// to call more than once.
func (u *Upstream) Stop() {
	u.Release()
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return
	}
	u.stopped = true
	u.mu.Unlock()
	u.srv.CloseClientConnections()
	u.srv.Close()
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	stall := u.stall
	u.mu.Unlock()
	if stall != nil {
		u.count(func() { u.stalled++ })
		defer u.count(func() { u.stalled-- })
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	if !u.authorized(r) {
		u.count(func() { u.refused++ })
		w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
		u.count(func() { u.fetches++ })
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		u.count(func() { u.posts++ })
	case strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack":
		http.Error(w, "read-only", http.StatusForbidden)
		return
	}
	// net/http/cgi refuses chunked bodies, which git sends for large
	// negotiations: give it the body with a length.
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
	}
	r.Header.Del("Authorization") // not into http-backend's environment
	u.handler.ServeHTTP(w, r)
}

func (u *Upstream) count(f func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f()
}

func (u *Upstream) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	u.mu.Lock()
	want := u.password
	u.mu.Unlock()
	return ok && subtle.ConstantTimeCompare([]byte(user), []byte(UpstreamUser)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1
}

// Path is the served repository's directory.
func (u *Upstream) Path() string { return filepath.Clean(u.Repo.Dir) }
