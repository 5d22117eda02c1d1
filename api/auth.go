package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
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

// requireToken answers 401 (never 400, unlike echo's KeyAuth) for a missing,
// malformed or wrong token. challenge is the WWW-Authenticate value, so git
// knows to ask for credentials.
func requireToken(ts *tokenSet, basic bool, challenge string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !ts.valid(presentedToken(c.Request(), basic)) {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, challenge)
				return &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: "missing or wrong token"}
			}
			return next(c)
		}
	}
}
