package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// TestCheckoutExpectSHA: with the job's own commit expected, a pin of
// another commit is exit 1 with both SHAs, before any fetch (DIR is not
// even created) and without a retry; the pinned sha or a computed merge's
// source passes.
func TestCheckoutExpectSHA(t *testing.T) {
	s := startPinnedServer(t, "")
	p, srv, api := s.p, s.srv, s.api
	feature, _ := p.RefSHA(t, "refs/heads/feature")
	pin := s.pin(t, 7, client.PinRequest{SHA: p.First})
	merged, _, err := api.Pin(t.Context(), "group/app", 8, client.PinRequest{Merge: &client.MergeRequest{Source: "feature", Target: "main", Mode: client.ModeMerge}})
	if err != nil || merged.Merge == nil || merged.Merge.SourceSHA != feature {
		t.Fatalf("computed merge pin: %v %+v", err, merged)
	}
	lookup := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}

	// The pin's values in the environment: REFKEEPER_SHA is the pin's sha.
	dir := filepath.Join(t.TempDir(), "w")
	code, _, errOut := cliRun(t, pinEnv(pin), nil, "checkout", dir, "--expect-sha", p.Second)
	if code != ExitError || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "the pin is "+p.First+", not the job's commit "+p.Second) {
		t.Fatalf("checkout of a pin of another commit = %d %q", code, errOut)
	}
	t.Logf("printed: %s", errOut)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("DIR exists after a refused pin: %v", err)
	}
	withEnv := pinEnv(pin)
	withEnv["REFKEEPER_EXPECT_SHA"] = p.Second
	if code, _, errOut := cliRun(t, withEnv, nil, "checkout", dir); code != ExitError || !strings.Contains(errOut, "not the job's commit "+p.Second) {
		t.Fatalf("REFKEEPER_EXPECT_SHA of another commit = %d %q", code, errOut)
	}
	withEnv["REFKEEPER_EXPECT_SHA"] = strings.ToUpper(p.First)
	if code, _, errOut := cliRun(t, withEnv, nil, "checkout", dir); code != 0 || testdata.HeadOf(t, dir) != p.First {
		t.Fatalf("REFKEEPER_EXPECT_SHA of the pinned commit = %d %q", code, errOut)
	}

	// Looked up: a computed merge's pin is the job's when its source is.
	dir = filepath.Join(t.TempDir(), "w")
	code, _, errOut = cliRun(t, lookup, nil, "checkout", dir, "--project", "group/app", "--pipeline", "8", "--expect-sha", p.First, "--attempts", "5")
	if code != ExitError || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "retrying") ||
		!strings.Contains(errOut, "the pin is "+merged.SHA+" (a merge of "+feature+"), not the job's commit "+p.First) {
		t.Fatalf("checkout of a merge of another source = %d %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("DIR exists after a refused pin: %v", err)
	}
	for _, expect := range []string{feature, merged.SHA} {
		dir := filepath.Join(t.TempDir(), "w")
		if code, _, errOut := cliRun(t, lookup, nil, "checkout", dir, "--project", "group/app", "--pipeline", "8", "--expect-sha", expect); code != 0 || testdata.HeadOf(t, dir) != merged.SHA {
			t.Fatalf("checkout --expect-sha %s of the merge = %d %q", expect, code, errOut)
		}
	}
	if code, _, errOut := cliRun(t, lookup, nil, "checkout", t.TempDir(), "--project", "group/app", "--pipeline", "8", "--expect-sha", "main"); code != ExitUsage {
		t.Fatalf("--expect-sha main = %d %q", code, errOut)
	}
}

// idTokenIssuer is the Actions runtime's ID token endpoint as the test
// serves it over HTTP: it answers a request carrying the runtime's
// request token with the token it is told to hand out, and records what
// it was asked.
type idTokenIssuer struct {
	*httptest.Server
	requestToken string

	mu       sync.Mutex
	handOut  string
	failures int // answer 503 this many times first
	asked    []*http.Request
}

func startIDTokenIssuer(tb testing.TB, requestToken string) *idTokenIssuer {
	iss := &idTokenIssuer{requestToken: requestToken}
	iss.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		iss.asked = append(iss.asked, r.Clone(r.Context()))
		switch {
		case r.URL.Path != "/_apis/idtoken" || r.Method != http.MethodGet:
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer "+iss.requestToken:
			http.Error(w, "bad request token", http.StatusUnauthorized)
		case iss.failures > 0:
			iss.failures--
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"value": iss.handOut})
		}
	}))
	tb.Cleanup(iss.Close)
	return iss
}

// requestURL is ACTIONS_ID_TOKEN_REQUEST_URL as GitHub's runner sets it,
// with a query of its own.
func (iss *idTokenIssuer) requestURL() string { return iss.URL + "/_apis/idtoken?api-version=2.0" }

func (iss *idTokenIssuer) requests() []*http.Request {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return append([]*http.Request(nil), iss.asked...)
}

// TestCheckoutIDToken: with --project and --pipeline, checkout looks the
// pin up with the job's ID token: REFKEEPER_ID_TOKEN, or one it requests
// from the Actions runtime with audience refkeeper and the runtime's
// request token as bearer. The server does not verify ID tokens yet, so the
// issuer hands out a token the server accepts (an API token) or one it
// refuses, which shows which token the lookup used. REFKEEPER_TOKEN comes
// first, then REFKEEPER_ID_TOKEN, then the request.
func TestCheckoutIDToken(t *testing.T) {
	s := startPinnedServer(t, "")
	p, srv := s.p, s.srv
	s.pin(t, 7, client.PinRequest{SHA: p.First})
	const requestToken = "runtime-request-token-0123456789"
	const refused = "a-token-the-server-refuses-0123456789"
	iss := startIDTokenIssuer(t, requestToken)
	actions := func(extra map[string]string) map[string]string {
		env := map[string]string{"REFKEEPER_URL": srv.Base,
			envActionsRequestURL: iss.requestURL(), envActionsRequestToken: requestToken}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	checkout := func(env map[string]string, extra ...string) (int, string, string) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "w")
		code, _, errOut := cliRun(t, env, nil, append([]string{"checkout", dir, "--project", "group/app", "--pipeline", "7", "--retry-delay", "10ms"}, extra...)...)
		return code, dir, errOut
	}

	t.Run("requested from the Actions runtime", func(t *testing.T) {
		iss.mu.Lock()
		iss.handOut, iss.asked = testToken, nil
		iss.mu.Unlock()
		code, dir, errOut := checkout(actions(nil))
		if code != 0 || testdata.HeadOf(t, dir) != p.First {
			t.Fatalf("checkout with the requested ID token = %d %s", code, errOut)
		}
		asked := iss.requests()
		if len(asked) != 1 {
			t.Fatalf("the issuer was asked %d times", len(asked))
		}
		q := asked[0].URL.Query()
		if q.Get("audience") != "refkeeper" || len(q["audience"]) != 1 || q.Get("api-version") != "2.0" ||
			asked[0].Header.Get("Authorization") != "Bearer "+requestToken {
			t.Fatalf("the request for the ID token: %s %v", asked[0].URL, asked[0].Header)
		}
		if strings.Contains(errOut, requestToken) || strings.Contains(errOut, testToken) {
			t.Fatalf("a token was printed: %s", errOut)
		}

		// The token handed out is the one the lookup sends.
		iss.mu.Lock()
		iss.handOut = refused
		iss.mu.Unlock()
		if code, _, errOut := checkout(actions(nil)); code != ExitError || !strings.Contains(errOut, "401 unauthorized") {
			t.Fatalf("checkout with a requested token the server refuses = %d %s", code, errOut)
		}
	})

	t.Run("the runtime fails, then answers", func(t *testing.T) {
		iss.mu.Lock()
		iss.handOut, iss.failures, iss.asked = testToken, 1, nil
		iss.mu.Unlock()
		code, _, errOut := checkout(actions(nil))
		if code != 0 || !strings.Contains(errOut, "the Actions runtime answered 503 Service Unavailable (attempt 1 of 5); retrying in") || len(iss.requests()) != 2 {
			t.Fatalf("checkout after a 503 of the runtime = %d (%d requests) %s", code, len(iss.requests()), errOut)
		}
	})

	t.Run("the runtime refuses the request token", func(t *testing.T) {
		iss.mu.Lock()
		iss.asked = nil
		iss.mu.Unlock()
		env := actions(map[string]string{envActionsRequestToken: "a-request-token-of-another-job-0123"})
		code, _, errOut := checkout(env)
		if code != ExitError || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "answered 401 Unauthorized") || len(iss.requests()) != 1 {
			t.Fatalf("checkout with a refused request token = %d %q", code, errOut)
		}
	})

	t.Run("REFKEEPER_ID_TOKEN", func(t *testing.T) {
		iss.mu.Lock()
		iss.handOut, iss.asked = refused, nil
		iss.mu.Unlock()
		// Given, it is used, and the runtime is not asked.
		if code, dir, errOut := checkout(actions(map[string]string{"REFKEEPER_ID_TOKEN": testToken})); code != 0 || testdata.HeadOf(t, dir) != p.First || len(iss.requests()) != 0 {
			t.Fatalf("checkout with REFKEEPER_ID_TOKEN = %d (%d requests) %s", code, len(iss.requests()), errOut)
		}
		if code, _, errOut := checkout(map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_ID_TOKEN": refused}); code != ExitError || !strings.Contains(errOut, "401 unauthorized") {
			t.Fatalf("checkout with a refused REFKEEPER_ID_TOKEN = %d %s", code, errOut)
		}
	})

	t.Run("REFKEEPER_TOKEN comes first", func(t *testing.T) {
		iss.mu.Lock()
		iss.handOut, iss.asked = refused, nil
		iss.mu.Unlock()
		env := actions(map[string]string{"REFKEEPER_TOKEN": testToken, "REFKEEPER_ID_TOKEN": refused})
		if code, dir, errOut := checkout(env); code != 0 || testdata.HeadOf(t, dir) != p.First || len(iss.requests()) != 0 {
			t.Fatalf("checkout with REFKEEPER_TOKEN and ID tokens = %d (%d requests) %s", code, len(iss.requests()), errOut)
		}
	})

	t.Run("no token at all", func(t *testing.T) {
		code, _, errOut := checkout(map[string]string{"REFKEEPER_URL": srv.Base})
		if code != ExitUsage || !strings.Contains(errOut, "REFKEEPER_ID_TOKEN") || !strings.Contains(errOut, "id-token: write") {
			t.Fatalf("checkout without a token = %d %q", code, errOut)
		}
	})
}
