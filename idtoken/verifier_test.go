package idtoken_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/idtoken"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// fixture is a Verifier over a real issuer (testdata.StartIssuer) with
// one entry of each kind for it, and a log that must never show a token.
type fixture struct {
	iss     *testdata.Issuer
	v       *idtoken.Verifier
	logs    *testdata.LockedBuffer
	mu      sync.Mutex
	entries []access.Identity
	tokens  []string // every token minted, for the log check
}

func newFixture(t *testing.T, kinds ...string) *fixture {
	t.Helper()
	f := &fixture{iss: testdata.StartIssuer(t), logs: &testdata.LockedBuffer{}}
	if len(kinds) == 0 {
		kinds = []string{"gitlab"}
	}
	for _, k := range kinds {
		f.entries = append(f.entries, access.Identity{Issuer: f.iss.URL, Audience: testdata.IssuerAudience, Kind: k,
			Projects: []refs.ProjectPattern{"group/*"}})
	}
	f.v = &idtoken.Verifier{
		Identities:     f.identities,
		Timeout:        2 * time.Second,
		RetryDiscovery: 200 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() {
		for _, tok := range f.tokens {
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			if strings.Contains(f.logs.String(), tok) || len(sig) > 16 && strings.Contains(f.logs.String(), sig) {
				t.Errorf("a log line shows a token:\n%s", f.logs.String())
				return
			}
		}
	})
	return f
}

func (f *fixture) identities() []access.Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]access.Identity(nil), f.entries...)
}

func (f *fixture) setEntries(e ...access.Identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = e
}

func (f *fixture) keep(tok string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(tok) > 20 {
		f.tokens = append(f.tokens, tok)
	}
	return tok
}

func (f *fixture) verify(t *testing.T, tok string) (access.Grant, error) {
	t.Helper()
	f.keep(tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.v.Verify(ctx, tok)
}

// gitlab is a GitLab-shaped token of group/app pipeline 7, with changes.
func (f *fixture) gitlab(t *testing.T, change map[string]any) string {
	t.Helper()
	c := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	for k, v := range change {
		c[k] = v
	}
	return f.keep(f.iss.Token(t, c))
}

func wantGrant(t *testing.T, what string, g access.Grant, err error, project refs.Project, pipeline refs.PipelineID) {
	t.Helper()
	if err != nil || g.Role != access.Job || g.Project != project || g.Pipeline != pipeline {
		t.Fatalf("%s: grant %+v, err %v; want job %s pipeline %d", what, g, err, project, pipeline)
	}
}

func wantRefused(t *testing.T, what string, g access.Grant, err error, says string) {
	t.Helper()
	var refused *idtoken.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), says) || g.Role != "" {
		t.Fatalf("%s: grant %+v, err %v; want refused saying %q", what, g, err, says)
	}
}

func wantUnknown(t *testing.T, what string, g access.Grant, err error) {
	t.Helper()
	if !errors.Is(err, idtoken.ErrNotIDToken) || g.Role != "" {
		t.Fatalf("%s: grant %+v, err %v; want ErrNotIDToken", what, g, err)
	}
}

func wantUnavailable(t *testing.T, what string, g access.Grant, err error) {
	t.Helper()
	if !refs.IsUnavailable(err) || g.Role != "" {
		t.Fatalf("%s: grant %+v, err %v; want *refs.UnavailableError", what, g, err)
	}
}

func TestGitLabAndGitHubShapedTokens(t *testing.T) {
	f := newFixture(t, "gitlab")
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "GitLab-shaped token", g, err, "group/app", 7)
	if !g.MayPin(access.WritePins, "group/app", 7) || g.MayPin(access.WritePins, "group/app", 8) ||
		g.MayPin(access.WritePins, "group/lib", 7) || g.May(access.ReadPins, "group/app") || g.MayList() || g.MayAdminister() {
		t.Errorf("the job's grant covers more or less than its pin: %+v", g)
	}
	// A GitHub-shaped token of a gitlab entry: it lacks the claims.
	gh := f.keep(f.iss.Token(t, testdata.GitHubClaims("group/app", 99, testdata.IssuerAudience)))
	g, err = f.verify(t, gh)
	wantRefused(t, "GitHub-shaped token for a gitlab entry", g, err, "project_path and pipeline_id")

	f.setEntries(access.Identity{Issuer: f.iss.URL, Audience: testdata.IssuerAudience, Kind: "github", Projects: []refs.ProjectPattern{"group/*"}})
	g, err = f.verify(t, gh)
	wantGrant(t, "GitHub-shaped token", g, err, "group/app", 99)
	g, err = f.verify(t, f.gitlab(t, nil))
	wantRefused(t, "GitLab-shaped token for a github entry", g, err, "repository and run_id")

	// Pipeline ids as JSON numbers are read too; anything else is absent.
	g, err = f.verify(t, f.keep(f.iss.Token(t, map[string]any{"aud": testdata.IssuerAudience, "repository": "group/app", "run_id": 12})))
	wantGrant(t, "numeric run_id", g, err, "group/app", 12)
	for _, bad := range []any{"0", "-3", "07", "1e3", 1.5, true, "12 ", ""} {
		g, err = f.verify(t, f.keep(f.iss.Token(t, map[string]any{"aud": testdata.IssuerAudience, "repository": "group/app", "run_id": bad})))
		wantRefused(t, fmt.Sprintf("run_id %#v", bad), g, err, "repository and run_id")
	}
	g, err = f.verify(t, f.keep(f.iss.Token(t, map[string]any{"aud": testdata.IssuerAudience, "repository": "../etc", "run_id": "3"})))
	wantRefused(t, "a repository claim that is no project name", g, err, "not a project name")
}

// TestProjectOutsideTheEntry: a valid token whose project the entry does
// not cover (on a public issuer, any stranger's) is refused as any other
// token is (the contract's 401), not accepted as a job that may do nothing.
func TestProjectOutsideTheEntry(t *testing.T) {
	f := newFixture(t, "gitlab")
	c := testdata.GitLabClaims("evil/app", 7, testdata.IssuerAudience)
	g, err := f.verify(t, f.keep(f.iss.Token(t, c)))
	wantRefused(t, "token of evil/app", g, err, "outside its identities entries' projects")
}

func TestTimes(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	cases := []struct {
		name   string
		change map[string]any
		says   string // "" accepted
	}{
		{"valid", nil, ""},
		{"expired", map[string]any{"exp": now.Add(-2 * time.Minute), "iat": now.Add(-10 * time.Minute), "nbf": now.Add(-10 * time.Minute)}, "expired"},
		{"expired within the leeway", map[string]any{"exp": now.Add(-30 * time.Second), "iat": now.Add(-10 * time.Minute), "nbf": now.Add(-10 * time.Minute)}, ""},
		{"not yet valid", map[string]any{"nbf": now.Add(2 * time.Minute), "iat": now}, "not valid before"},
		{"not yet valid within the leeway", map[string]any{"nbf": now.Add(30 * time.Second)}, ""},
		{"issued in the future", map[string]any{"iat": now.Add(2 * time.Minute), "nbf": now}, "issued in the future"},
		{"no exp", map[string]any{"exp": nil}, "no exp"},
		{"no iat", map[string]any{"iat": nil}, "no iat"},
		{"GitLab's default, the job's hour", map[string]any{"iat": now, "exp": now.Add(time.Hour)}, ""},
		{"a day", map[string]any{"iat": now, "exp": now.Add(idtoken.MaxLifetime)}, ""},
		{"valid for a year", map[string]any{"iat": now, "nbf": now, "exp": now.Add(365 * 24 * time.Hour)}, "longer than"},
		{"issued long ago, valid for a year", map[string]any{"iat": now.Add(-300 * 24 * time.Hour), "nbf": now.Add(-300 * 24 * time.Hour), "exp": now.Add(365 * 24 * time.Hour)}, "longer than"},
		{"iat made recent, exp far", map[string]any{"iat": now.Add(time.Hour), "exp": now.Add(25 * time.Hour)}, "longer than"},
	}
	for _, c := range cases {
		g, err := f.verify(t, f.gitlab(t, c.change))
		if c.says == "" {
			wantGrant(t, c.name, g, err, "group/app", 7)
		} else {
			wantRefused(t, c.name, g, err, c.says)
		}
	}
}

func TestAudienceAndIssuer(t *testing.T) {
	f := newFixture(t)
	g, err := f.verify(t, f.gitlab(t, map[string]any{"aud": "someone-else"}))
	wantRefused(t, "wrong audience", g, err, `"refkeeper"`)
	g, err = f.verify(t, f.gitlab(t, map[string]any{"aud": []string{"someone-else", testdata.IssuerAudience}}))
	wantGrant(t, "aud holding ours among others", g, err, "group/app", 7)

	// An issuer no entry names is never asked: its token is unknown.
	other := testdata.StartIssuer(t)
	g, err = f.verify(t, f.keep(other.Token(t, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
	wantUnknown(t, "token of an untrusted issuer", g, err)
	if other.Discoveries()+other.KeyFetches() != 0 {
		t.Errorf("the untrusted issuer was asked %d times", other.Discoveries()+other.KeyFetches())
	}
	// Claiming the trusted issuer with another issuer's key.
	c := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	c["iss"] = f.iss.URL
	g, err = f.verify(t, f.keep(other.Token(t, c)))
	wantRefused(t, "trusted iss, signed by another issuer", g, err, "signature")
	// A trusted key, another iss: still not ours.
	g, err = f.verify(t, f.gitlab(t, map[string]any{"iss": f.iss.URL + "/other"}))
	wantUnknown(t, "signed by the trusted issuer's key, iss another URL", g, err)
	g, err = f.verify(t, f.gitlab(t, map[string]any{"iss": nil}))
	wantUnknown(t, "no iss", g, err)
	for _, junk := range []string{"", "not-a-jwt", "a.b.c", strings.Repeat("x", 20000), "rkf1_abc.def"} {
		g, err = f.v.Verify(context.Background(), junk)
		wantUnknown(t, fmt.Sprintf("junk %.20q", junk), g, err)
	}
}

// TestKeys: a token signed with another key is refused; a rotated key is
// fetched again for its unknown key id; retired keys stop verifying.
func TestKeys(t *testing.T) {
	f := newFixture(t)
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "first token", g, err, "group/app", 7)
	if f.iss.Discoveries() != 1 || f.iss.KeyFetches() != 1 {
		t.Fatalf("first token: %d discoveries, %d key fetches; want 1, 1", f.iss.Discoveries(), f.iss.KeyFetches())
	}
	for range 5 {
		g, err = f.verify(t, f.gitlab(t, nil))
		wantGrant(t, "later token", g, err, "group/app", 7)
	}
	if f.iss.Discoveries() != 1 || f.iss.KeyFetches() != 1 {
		t.Errorf("later tokens fetched again: %d discoveries, %d key fetches", f.iss.Discoveries(), f.iss.KeyFetches())
	}

	// Rotation: the new key id is unknown, so the key set is fetched again.
	old := f.iss.SigningKey()
	f.iss.Rotate(t)
	g, err = f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "token of the rotated key", g, err, "group/app", 7)
	if f.iss.KeyFetches() != 2 {
		t.Errorf("a token with a new key id: %d key set fetches, want 2", f.iss.KeyFetches())
	}
	g, err = f.verify(t, f.keep(f.iss.TokenWithKey(t, old, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
	wantGrant(t, "token of the old key, still published", g, err, "group/app", 7)

	// Another key, with its own key id and with the published one's.
	stranger := f.iss.NewKey(t)
	g, err = f.verify(t, f.keep(f.iss.TokenWithKey(t, stranger, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
	wantRefused(t, "unpublished key", g, err, "signature")
	stranger.ID = f.iss.SigningKey().ID
	g, err = f.verify(t, f.keep(f.iss.TokenWithKey(t, stranger, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
	wantRefused(t, "unpublished key under the published key id", g, err, "signature")
}

// TestRetiredKey: a key the issuer took out of its key set stops
// verifying once the discovery and keys are renewed.
func TestRetiredKey(t *testing.T) {
	f := newFixture(t)
	f.v.Renew = time.Second
	old := f.iss.SigningKey()
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "token of the first key", g, err, "group/app", 7)
	f.iss.Rotate(t)
	f.iss.Retire()
	testdata.WaitFor(t, "the retired key to be refused", 30*time.Second, func() bool {
		_, err := f.verify(t, f.keep(f.iss.TokenWithKey(t, old, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
		return err != nil
	})
	g, err = f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "token of the new key", g, err, "group/app", 7)
	g, err = f.verify(t, f.keep(f.iss.TokenWithKey(t, old, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
	wantRefused(t, "token of the retired key", g, err, "signature")
}

// TestAlgorithmConfusion: an unsigned token and one signed with HMAC keyed
// by the issuer's public key are refused, without asking the issuer.
func TestAlgorithmConfusion(t *testing.T) {
	f := newFixture(t)
	c := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	for name, tok := range map[string]string{
		"alg none":                        f.keep(f.iss.NoneToken(c)),
		"HS256 keyed with the public key": f.keep(f.iss.HMACToken(t, c)),
	} {
		g, err := f.verify(t, tok)
		wantUnknown(t, name, g, err)
	}
	if n := f.iss.Discoveries() + f.iss.KeyFetches(); n != 0 {
		t.Errorf("forged tokens made the issuer be asked %d times", n)
	}
	// Also once the keys are known.
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "a real token", g, err, "group/app", 7)
	g, err = f.verify(t, f.keep(f.iss.HMACToken(t, c)))
	wantUnknown(t, "HS256 after the keys are cached", g, err)
}

// TestEntriesOfOneIssuer: duplicate issuers with different audiences and
// kinds; entries that read a token as different pipelines refuse it.
func TestEntriesOfOneIssuer(t *testing.T) {
	f := newFixture(t)
	f.setEntries(
		access.Identity{Issuer: f.iss.URL, Audience: "aud-group", Kind: "gitlab", Projects: []refs.ProjectPattern{"group/*"}},
		access.Identity{Issuer: f.iss.URL, Audience: "aud-other", Kind: "gitlab", Projects: []refs.ProjectPattern{"other/*"}},
	)
	// Each audience brings its entry's projects only.
	g, err := f.verify(t, f.keep(f.iss.Token(t, testdata.GitLabClaims("other/lib", 3, "aud-group"))))
	wantRefused(t, "other/lib with group's audience", g, err, "outside")
	g, err = f.verify(t, f.keep(f.iss.Token(t, testdata.GitLabClaims("other/lib", 3, "aud-other"))))
	wantGrant(t, "other/lib with its audience", g, err, "other/lib", 3)
	if !g.MayPin(access.WritePins, "other/lib", 3) {
		t.Errorf("other/lib's own audience does not cover it: %+v", g)
	}
	g, err = f.verify(t, f.keep(f.iss.Token(t, testdata.GitLabClaims("other/lib", 3, "aud-nobody"))))
	wantRefused(t, "neither audience", g, err, "aud-group")

	// One entry per kind, same issuer and audience: a token with both
	// kinds' claims naming different pipelines is refused.
	f.setEntries(
		access.Identity{Issuer: f.iss.URL, Audience: testdata.IssuerAudience, Kind: "gitlab", Projects: []refs.ProjectPattern{"*"}},
		access.Identity{Issuer: f.iss.URL, Audience: testdata.IssuerAudience, Kind: "github", Projects: []refs.ProjectPattern{"*"}},
	)
	both := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
	both["repository"], both["run_id"] = "group/app", "8"
	g, err = f.verify(t, f.keep(f.iss.Token(t, both)))
	wantRefused(t, "two kinds, two pipelines", g, err, "different pipelines")
	both["run_id"] = "7"
	g, err = f.verify(t, f.keep(f.iss.Token(t, both)))
	wantGrant(t, "two kinds, one pipeline", g, err, "group/app", 7)
	g, err = f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "GitLab-shaped, read by its kind's entry", g, err, "group/app", 7)

	// An entry removed (the access file re-read) stops accepting at once.
	f.setEntries(access.Identity{Issuer: "https://gitlab.example.com", Audience: testdata.IssuerAudience, Kind: "gitlab", Projects: []refs.ProjectPattern{"*"}})
	g, err = f.verify(t, f.gitlab(t, nil))
	wantUnknown(t, "token of an issuer taken out of the file", g, err)
}

// TestIssuerDown: an issuer down when the first token comes gives a
// transient error (not a 401), asked again after the retry period only;
// once it is back, tokens verify. Keys that cannot be fetched are
// transient too.
func TestIssuerDown(t *testing.T) {
	f := newFixture(t)
	f.iss.SetDown(true)
	for range 5 {
		g, err := f.verify(t, f.gitlab(t, nil))
		wantUnavailable(t, "issuer down", g, err)
	}
	if !strings.Contains(f.logs.String(), "ID token issuer unreachable") {
		t.Errorf("the issuer's failure is not logged:\n%s", f.logs.String())
	}
	f.iss.SetDown(false)
	testdata.WaitFor(t, "tokens verify once the issuer is back", 10*time.Second, func() bool {
		_, err := f.verify(t, f.gitlab(t, nil))
		return err == nil
	})
	// Keys known, the issuer down again: known keys still verify; an
	// unknown key id cannot be fetched, which is transient.
	f.iss.SetDown(true)
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "known key, issuer down", g, err, "group/app", 7)
	f.iss.Rotate(t)
	g, err = f.verify(t, f.gitlab(t, nil))
	wantUnavailable(t, "rotated key, issuer down", g, err)
	// Back: the new key is fetched. (go-oidc may answer a fetch that
	// starts just as a failed one ends with that failure once: transient,
	// so asked again.)
	f.iss.SetDown(false)
	testdata.WaitFor(t, "the rotated key to verify once the issuer is back", 30*time.Second, func() bool {
		g, err = f.verify(t, f.gitlab(t, nil))
		return err == nil
	})
	wantGrant(t, "rotated key, issuer back", g, err, "group/app", 7)
}

// TestIssuerFetchesAreBounded: an issuer that answers too much, redirects,
// points its keys at plain http elsewhere, or never answers gives a
// transient error within the Verifier's Timeout.
func TestIssuerFetchesAreBounded(t *testing.T) {
	issuerAt := func(t *testing.T, handler func(url string, w http.ResponseWriter, r *http.Request)) *httptest.Server {
		var srv *httptest.Server
		srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler(srv.URL, w, r) }))
		t.Cleanup(srv.Close)
		return srv
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	cases := map[string]func(url string, w http.ResponseWriter, r *http.Request){
		"huge discovery": func(url string, w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q, "pad": "%s"}`, url, url+"/keys", strings.Repeat("x", 2<<20))
		},
		"redirect": func(url string, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/.well-known/openid-configuration", http.StatusFound)
		},
		"keys over plain http elsewhere": func(url string, w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": "http://keys.example.com/keys"}`, url)
		},
		"issuer mismatch": func(url string, w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer": "https://elsewhere.example.com", "jwks_uri": %q}`, url+"/keys")
		},
		"never answers": func(url string, w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		},
		"endless answer": func(url string, w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer": %q, "pad": "`, url)
			for r.Context().Err() == nil {
				if _, err := w.Write([]byte(strings.Repeat("x", 64<<10))); err != nil {
					return
				}
			}
		},
	}
	for name, handler := range cases {
		t.Run(name, func(t *testing.T) {
			srv := issuerAt(t, handler)
			f := newFixture(t)
			f.setEntries(access.Identity{Issuer: srv.URL, Audience: testdata.IssuerAudience, Kind: "gitlab", Projects: []refs.ProjectPattern{"*"}})
			c := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
			c["iss"] = srv.URL
			g, err := f.verify(t, f.keep(f.iss.Token(t, c)))
			wantUnavailable(t, name, g, err)
		})
	}
}

// TestKeyFetchesAreRateLimited: tokens with ever new unknown key ids do
// not make the issuer's key set be fetched once each.
func TestKeyFetchesAreRateLimited(t *testing.T) {
	f := newFixture(t)
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "first token", g, err, "group/app", 7)
	stranger := f.iss.NewKey(t)
	start := time.Now()
	var limited int
	for i := range 20 {
		stranger.ID = fmt.Sprintf("unknown-%d", i)
		g, err := f.verify(t, f.keep(f.iss.TokenWithKey(t, stranger, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
		if refs.IsUnavailable(err) {
			limited++ // the limit stopped the fetch: transient, maybe a rotation
			continue
		}
		wantRefused(t, stranger.ID, g, err, "signature")
	}
	// A burst of three fetches past the discovery's own, then one per ten
	// seconds.
	if n, most := f.iss.KeyFetches(), 1+3+int(time.Since(start)/(10*time.Second))+1; n > most || limited == 0 {
		t.Errorf("20 tokens with unknown key ids made %d key set fetches (%d stopped by the limit); want at most %d", n, limited, most)
	}
	// A real rotation after that waits for the limit, at worst: it is
	// answered 503 (never a final 401) until the key set may be fetched
	// again, then accepted.
	f.iss.Rotate(t)
	testdata.WaitFor(t, "the rotated key is fetched", 30*time.Second, func() bool {
		g, err := f.verify(t, f.gitlab(t, nil))
		if err != nil && !refs.IsUnavailable(err) {
			t.Fatalf("a token of a freshly rotated key, key fetches limited: %+v, %v; want 503 until fetched", g, err)
		}
		return err == nil
	})
}

// TestKnownKeyIDNeverFetches: a token under a key id the cached set holds,
// with a signature that key does not make, is refused without asking the
// issuer: it is a forgery, not a rotation.
func TestKnownKeyIDNeverFetches(t *testing.T) {
	f := newFixture(t)
	g, err := f.verify(t, f.gitlab(t, nil))
	wantGrant(t, "real", g, err, "group/app", 7)
	before := f.iss.KeyFetches()
	stranger := f.iss.NewKey(t)
	stranger.ID = f.iss.SigningKey().ID
	for range 5 {
		g, err = f.verify(t, f.keep(f.iss.TokenWithKey(t, stranger, testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience))))
		wantRefused(t, "known key id, bad signature", g, err, "signature")
	}
	if n := f.iss.KeyFetches() - before; n != 0 {
		t.Errorf("tokens of a known key id with bad signatures made %d key set fetches", n)
	}
}

// TestKeyFetchFailureStands: while the key set cannot be fetched, tokens
// of unknown key ids are answered 503 from the last failure; the issuer
// is not asked once per token.
func TestKeyFetchFailureStands(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	var keyHits atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q, "id_token_signing_alg_values_supported": ["RS256"]}`, srv.URL, srv.URL+"/keys")
		case "/keys":
			keyHits.Add(1)
			if failing.Load() {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		}
	}))
	t.Cleanup(srv.Close)
	f := newFixture(t)
	f.v.RetryDiscovery = time.Minute
	f.setEntries(access.Identity{Issuer: srv.URL, Audience: testdata.IssuerAudience, Kind: "gitlab", Projects: []refs.ProjectPattern{"*"}})
	token := func(kid string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		c := testdata.GitLabClaims("group/app", 7, testdata.IssuerAudience)
		now := time.Now()
		c["iss"], c["iat"], c["nbf"], c["exp"] = srv.URL, now.Unix(), now.Unix(), now.Add(5*time.Minute).Unix()
		tok, err := jwt.Signed(signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return f.keep(tok)
	}
	// Failing from the start: the discovery fails, and stands.
	failing.Store(true)
	for i := range 40 {
		g, err := f.verify(t, token(fmt.Sprintf("forged-%d", i)))
		wantUnavailable(t, "key set failing at discovery", g, err)
	}
	t.Logf("failing from the start: 40 tokens, %d key set fetches", keyHits.Load())
	if n := keyHits.Load(); n != 1 {
		t.Errorf("40 tokens while the key set fails at discovery: %d key set fetches, want 1", n)
	}
	// Keys known, then failing: one fetch for the first unknown key id,
	// then its failure answers.
	failing.Store(false)
	f = newFixture(t) // a verifier that knows nothing of the issuer
	f.setEntries(access.Identity{Issuer: srv.URL, Audience: testdata.IssuerAudience, Kind: "gitlab", Projects: []refs.ProjectPattern{"*"}})
	g, err := f.verify(t, token("k1"))
	wantGrant(t, "keys back", g, err, "group/app", 7)
	failing.Store(true)
	before := keyHits.Load()
	for i := range 40 {
		g, err := f.verify(t, token(fmt.Sprintf("forged-%d", i)))
		wantUnavailable(t, "key set failing, unknown key id", g, err)
	}
	t.Logf("keys cached, then failing: 40 tokens, %d key set fetches", keyHits.Load()-before)
	if n := keyHits.Load() - before; n != 1 {
		t.Errorf("40 tokens with unknown key ids while the key set fails: %d key set fetches, want 1", n)
	}
	// What a 503 tells the caller (its Op) does not name the issuer.
	_, err = f.verify(t, token("forged-again"))
	var unavailable *refs.UnavailableError
	if !errors.As(err, &unavailable) || strings.Contains(unavailable.Op, "127.0.0.1") {
		t.Errorf("503 of an unknown key id: %v; want one that does not name the issuer", err)
	}
	g, err = f.verify(t, token("k1"))
	wantGrant(t, "known key while the key set fails", g, err, "group/app", 7)
}
