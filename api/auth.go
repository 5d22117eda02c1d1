package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/access"
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

// authenticator knows every API token: the --tokens ones (admin) and the
// access file's scoped ones, read again when that file changes.
type authenticator struct {
	admins *tokenSet
	access *access.File
}

// grant answers what a presented token may do; false for an unknown one.
// Both sets are always consulted, so timing says nothing of which holds it.
func (a *authenticator) grant(token string) (access.Grant, bool) {
	admin := a.admins.valid(token)
	g, ok := a.access.Token(token)
	if admin {
		return access.AdminGrant, true
	}
	return g, ok
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
			g, ok := a.grant(presentedToken(c.Request(), false))
			if !ok {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, challenge)
				return &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: "missing or wrong token"}
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

func forbidden(g access.Grant) *httpError {
	return &httpError{Status: http.StatusForbidden, Code: codeForbidden,
		Message: fmt.Sprintf("token %q (role %s) does not cover this request", g.Name, g.Role)}
}
