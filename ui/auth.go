package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/access"
)

// The cookies. __Host- makes the browser refuse them unless they are
// Secure, for Path=/ and from this host alone (no sibling domain can plant
// one); SameSite=Strict keeps them off every request another site starts.
const (
	// tokenCookie keeps the logged-in token (base64url: a token may hold
	// bytes a cookie may not).
	tokenCookie = "__Host-refkeeper-token"
	// csrfCookie is the double-submit CSRF secret of the login and
	// logout forms.
	csrfCookie = "__Host-refkeeper-csrf"
	// loginLifetime is how long a login lasts in the browser.
	loginLifetime = 8 * time.Hour
	// maxFormBytes bounds a login or logout form.
	maxFormBytes = 8 << 10
)

// caller is who asks, as the pages show it.
type caller struct {
	Name     string
	Role     access.Role
	Admin    bool
	ByCookie bool // logged in with the form: the page offers a logout
	grant    access.Grant
}

// authState is what a request presented.
type authState int

const (
	noCredentials authState = iota
	authenticated
	badBearer // a wrong bearer token: 401
	badCookie // a cookie whose token is no longer valid: log in again
)

// identify finds the caller: the bearer header first (a wrong one is not
// replaced by a cookie), else the login cookie.
func (h *handler) identify(r *http.Request) (*caller, authState) {
	if hdr := r.Header.Get("Authorization"); hdr != "" {
		scheme, token, _ := strings.Cut(hdr, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, badBearer
		}
		g, ok := h.cfg.Authenticate(strings.TrimSpace(token))
		if !ok {
			return nil, badBearer
		}
		return newCaller(g, false), authenticated
	}
	ck, err := r.Cookie(tokenCookie)
	if err != nil {
		return nil, noCredentials
	}
	token, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil {
		return nil, badCookie
	}
	g, ok := h.cfg.Authenticate(string(token))
	if !ok {
		return nil, badCookie
	}
	return newCaller(g, true), authenticated
}

func newCaller(g access.Grant, byCookie bool) *caller {
	return &caller{Name: g.Name, Role: g.Role, Admin: g.MayAdminister(), ByCookie: byCookie, grant: g}
}

// loginPage is the "login" template's data.
type loginPage struct {
	Title   string
	Caller  *caller
	CSRF    string
	Message string
}

// askLogin answers the login form with status and why.
func (h *handler) askLogin(w http.ResponseWriter, r *http.Request, status int, message string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="refkeeper"`)
	}
	h.render(w, status, "login", loginPage{Title: "Log in", CSRF: csrfToken(w, r), Message: message})
}

// unauthenticated answers a request that did not say who it is.
func (h *handler) unauthenticated(w http.ResponseWriter, r *http.Request, st authState) {
	switch st {
	case badBearer:
		h.askLogin(w, r, http.StatusUnauthorized, "The bearer token is missing or wrong.")
	case badCookie:
		clearCookie(w, tokenCookie)
		h.askLogin(w, r, http.StatusUnauthorized, "The token you logged in with is no longer valid: log in again.")
	default:
		msg := ""
		if r.URL.Query().Get("from") == "login" {
			// The login set the cookie and sent the browser here, and
			// it did not come back: a Secure cookie over plain http.
			msg = "You logged in, but your browser did not keep the login cookie: browsers keep Secure cookies only over https (or on localhost). " +
				"Serve refkeeper over https (a TLS-terminating proxy in front is enough), or send the token as Authorization: Bearer."
		}
		h.askLogin(w, r, http.StatusUnauthorized, msg)
	}
}

// login takes the login form: the token is checked, then kept in the
// cookie, and the browser sent to the projects.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		// Whatever it holds stays out of every answer: a token in a
		// URL would be in histories and proxies' logs.
		h.fail(w, r, nil, http.StatusBadRequest, "The login form posts its token in the body, never in the URL.")
		return
	}
	if !h.formAllowed(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	g, ok := h.cfg.Authenticate(token)
	if !ok {
		h.askLogin(w, r, http.StatusUnauthorized, "That token is not valid.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(token)),
		Path: "/", MaxAge: int(loginLifetime.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	h.cfg.Logger.Info("logged in to the web page", "token_name", g.Name, "role", string(g.Role))
	http.Redirect(w, r, "/ui/?from=login", http.StatusSeeOther)
}

// logout forgets the login cookie.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.formAllowed(w, r) {
		return
	}
	clearCookie(w, tokenCookie)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// formAllowed parses a posted form and refuses, with 403, one another
// site made the browser send: its Origin (when sent) must be this host,
// its Sec-Fetch-Site (when sent) same-origin, and its csrf field must
// equal the csrf cookie, which SameSite=Strict keeps off cross-site posts.
// A csrf cookie of another shape than the page sets is refused with 400.
func (h *handler) formAllowed(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	if !sameOrigin(r) {
		h.fail(w, r, nil, http.StatusForbidden, "This form was sent from another site.")
		return false
	}
	ck, err := r.Cookie(csrfCookie)
	if err == nil && ck.Value != "" && !validCSRF(ck.Value) {
		// Not one csrfToken made: set by someone else (a sibling
		// site, a proxy, a hand), of any length. Compared with
		// nothing; the page sets a fresh one when opened.
		h.fail(w, r, nil, http.StatusBadRequest, "The form's CSRF cookie is not one this page set: open the page again and resend it.")
		return false
	}
	field := r.PostForm.Get("csrf")
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(field)) != 1 {
		h.fail(w, r, nil, http.StatusForbidden, "The form's CSRF token is missing or stale: open the page again and resend it.")
		return false
	}
	return true
}

// sameOrigin says whether a request's Origin and Sec-Fetch-Site, where the
// browser sent them, name this host. Only the host is compared: behind a
// TLS-terminating proxy the page is https while this server sees http.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// csrfBytes is the size of a CSRF secret; its cookie is their unpadded
// base64url, csrfLen characters.
const csrfBytes = 32

var csrfLen = base64.RawURLEncoding.EncodedLen(csrfBytes)

// validCSRF says whether a CSRF cookie's value has the shape csrfToken
// gives it: exactly csrfLen characters of strict base64url (so its length
// is checked before anything else is done with it).
func validCSRF(v string) bool {
	if len(v) != csrfLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(v)
	return err == nil
}

// csrfToken answers the request's CSRF secret, setting a new cookie when
// it has none or one of another shape.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && validCSRF(ck.Value) {
		return ck.Value
	}
	var b [csrfBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	v := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}
