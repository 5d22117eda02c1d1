package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/refs"
)

// tokenSet checks presented tokens against the configured ones in constant
// time: both sides are hashed first, so neither a token's content nor its
// length leaks through timing, and every configured token is compared.
type tokenSet struct {
	digests [][sha256.Size]byte
}

func newTokenSet(tokens []string) *tokenSet {
	ts := &tokenSet{}
	for _, t := range tokens {
		ts.digests = append(ts.digests, sha256.Sum256([]byte(t)))
	}
	return ts
}

func (ts *tokenSet) valid(token string) bool {
	if token == "" {
		return false
	}
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range ts.digests {
		match |= subtle.ConstantTimeCompare(d[:], ts.digests[i][:])
	}
	return match == 1
}

// presentedToken takes the token out of `Authorization: Bearer <t>`, or, when
// basic is allowed (git's credential helpers send it), out of the password of
// HTTP basic auth with any user name.
func presentedToken(r *http.Request, basic bool) string {
	h := r.Header.Get(echo.HeaderAuthorization)
	if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest)
	}
	if basic {
		if _, password, ok := r.BasicAuth(); ok {
			return password
		}
	}
	return ""
}

// IDTokens verifies CI jobs' ID tokens (*idtoken.Verifier): the grant of
// an accepted one (access.Job), else an error that is
// *refs.UnavailableError when the issuer could not be asked (503, retry)
// and otherwise a 401, told to the caller as any unknown token is (the
// verifier logs why).
type IDTokens interface {
	Verify(ctx context.Context, token string) (access.Grant, error)
}

// errUnknownToken is a token that is neither an API token nor, as far as
// anyone is asked, an ID token.
var errUnknownToken = errors.New("missing or wrong token")

// authenticator knows every API token: the --tokens ones (admin) and the
// access file's scoped ones, read again when that file changes; and, for
// any other token, asks ids whether it is a CI job's ID token.
type authenticator struct {
	admins *tokenSet
	access *access.File
	ids    IDTokens
}

// grant answers what a presented token may do; errUnknownToken (or the
// ID token verifier's refusal) for an unknown one. Both token sets are
// always consulted, so timing says nothing of which holds it.
func (a *authenticator) grant(ctx context.Context, token string) (access.Grant, error) {
	if g, ok := a.apiGrant(token); ok {
		return g, nil
	}
	if a.ids == nil || token == "" {
		return access.Grant{}, errUnknownToken
	}
	return a.ids.Verify(ctx, token)
}

// apiGrant answers what an API token (an admin token or one of the access
// file's) may do; false for any other token, a CI job's ID token included.
// Both token sets are always consulted, so timing says nothing of which
// holds it. The web page takes these tokens only: a job's ID token is for
// its own pin, not for a person's login.
func (a *authenticator) apiGrant(token string) (access.Grant, bool) {
	admin := a.admins.valid(token)
	g, ok := a.access.Token(token)
	switch {
	case admin:
		return access.AdminGrant, true
	case ok:
		return g, true
	}
	return access.Grant{}, false
}

// authMemo is a request's token and what it was found to be: a token is
// verified once per request (an ID token costs a signature check and
// maybe a fetch), whichever of the token limiter, requireToken and the
// git mount asks first.
type authMemo struct {
	token string
	grant access.Grant
	err   error
}

type authMemoKey struct{}

// grantOf is grant for a request's token, once per request: c's request
// keeps the answer for those that ask after.
func (a *authenticator) grantOf(c echo.Context, token string) (access.Grant, error) {
	r := c.Request()
	if m, ok := r.Context().Value(authMemoKey{}).(*authMemo); ok && m.token == token {
		return m.grant, m.err
	}
	g, err := a.grant(r.Context(), token)
	c.SetRequest(r.WithContext(context.WithValue(r.Context(), authMemoKey{}, &authMemo{token: token, grant: g, err: err})))
	return g, err
}

// requestGrant is grantOf for a plain request (the git mount's): the
// answer grantOf kept, else grant.
func (a *authenticator) requestGrant(r *http.Request, token string) (access.Grant, error) {
	if m, ok := r.Context().Value(authMemoKey{}).(*authMemo); ok && m.token == token {
		return m.grant, m.err
	}
	return a.grant(r.Context(), token)
}

// grantKey is where requireToken leaves the caller's grant for the routes.
const grantKey = "refkeeper.grant"

func callerGrant(c echo.Context) access.Grant {
	g, _ := c.Get(grantKey).(access.Grant)
	return g
}

// requireToken answers 401 (never 400, unlike echo's KeyAuth) for a missing,
// malformed or wrong token, and leaves the valid token's grant for allow.
// challenge is the WWW-Authenticate value, so a client knows to ask for
// credentials.
func requireToken(a *authenticator, challenge string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			g, err := a.grantOf(c, presentedToken(c.Request(), false))
			if refs.IsUnavailable(err) {
				return err // an issuer that did not answer: 503, retry
			}
			if err != nil {
				// One answer for every refused token: which issuers are
				// trusted, which audiences configured, why a token failed
				// are the log's (the verifier's), not the caller's.
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, challenge)
				return &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: errUnknownToken.Error()}
			}
			c.Set(grantKey, g)
			return next(c)
		}
	}
}

// allow refuses, with 403 forbidden and before anything is read or
// changed, a request that the caller's role or projects do not cover. The
// project is the route's {project}; a malformed one goes on to its
// handler's 400 (nothing can change for it). Administer is not tied to a
// project.
func allow(a access.Action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			g := callerGrant(c)
			if a == access.Administer {
				if !g.MayAdminister() {
					return forbidden(g)
				}
				return next(c)
			}
			if c.Param("project") == "" {
				if !g.MayList() {
					return forbidden(g)
				}
				return next(c) // a listing: filtered by its handler
			}
			p, err := projectParam(c)
			if err != nil {
				return next(c)
			}
			if !g.May(a, p) {
				return forbidden(g)
			}
			return next(c)
		}
	}
}

// allowPin is allow for the routes of one pin ({project} and {id}): a
// CI job's ID token passes for its own pipeline's pin, as the grant says
// (access.Grant.MayPin). A malformed id goes on to the handler's 400.
func allowPin(a access.Action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			g := callerGrant(c)
			p, err := projectParam(c)
			if err != nil {
				return next(c)
			}
			id, err := refs.ParsePipelineID(c.Param("id"))
			if err != nil {
				return next(c)
			}
			if !g.MayPin(a, p, id) {
				return forbidden(g)
			}
			return next(c)
		}
	}
}

func forbidden(g access.Grant) *httpError {
	if g.Role == access.Job {
		return &httpError{Status: http.StatusForbidden, Code: codeForbidden,
			Message: fmt.Sprintf("an ID token may only pin, get, finish and fetch its own pipeline's pin (%s, in the projects its issuer's identities entries cover)", g.Name)}
	}
	return &httpError{Status: http.StatusForbidden, Code: codeForbidden,
		Message: fmt.Sprintf("token %q (role %s) does not cover this request", g.Name, g.Role)}
}
