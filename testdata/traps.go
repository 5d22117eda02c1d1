package testdata

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// CredentialTrap is an HTTP server that asks every request for a password
// (401 with WWW-Authenticate: Basic) and records what it is sent: the
// server an attacker would point a mirror at to collect the service's
// upstream credentials. A test shows a credential cannot leak by finding
// no Authorization header here.
type CredentialTrap struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests int
	auth     []string
}

// StartCredentialTrap starts a CredentialTrap on a free loopback port; it
// is stopped when the test ends.
func StartCredentialTrap(tb testing.TB) *CredentialTrap {
	tb.Helper()
	t := &CredentialTrap{}
	t.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		t.requests++
		if a := r.Header.Values("Authorization"); len(a) > 0 {
			t.auth = append(t.auth, a...)
		}
		t.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="trap"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	}))
	tb.Cleanup(t.srv.Close)
	return t
}

// URL is a repository URL on the trap.
func (t *CredentialTrap) URL() string { return t.srv.URL + "/group/app.git" }

// Host is the trap's http://127.0.0.1:<port>.
func (t *CredentialTrap) Host() string { return t.srv.URL }

// Requests counts the requests it received.
func (t *CredentialTrap) Requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests
}

// Authorizations are the Authorization headers it received.
func (t *CredentialTrap) Authorizations() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.auth...)
}

// Redirector is an HTTP server that answers every request 301 to the same
// path and query below target: an upstream that sends git elsewhere.
type Redirector struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests int
}

// StartRedirector starts a Redirector to target (a base URL such as
// http://127.0.0.1:<port>) on a free loopback port; it is stopped when the
// test ends.
func StartRedirector(tb testing.TB, target string) *Redirector {
	tb.Helper()
	rd := &Redirector{}
	rd.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd.mu.Lock()
		rd.requests++
		rd.mu.Unlock()
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	tb.Cleanup(rd.srv.Close)
	return rd
}

// URL is the repository URL of UpstreamProject on the redirector.
func (rd *Redirector) URL() string { return rd.srv.URL + "/" + UpstreamProject + ".git" }

// Host is the redirector's http://127.0.0.1:<port>.
func (rd *Redirector) Host() string { return rd.srv.URL }

// Requests counts the requests it answered.
func (rd *Redirector) Requests() int {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.requests
}
