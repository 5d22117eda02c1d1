// Package ui is refkeeper's read-only web page, GET /ui/: server-rendered
// HTML (html/template, embedded), usable without JavaScript. It shows the
// projects the caller may read with their mirror health (state, last
// fetch, last error, size), and per project the pins with their state,
// age, time to expiry, merge request and merge inputs, filtered by query
// parameters, so every view is a link to bookmark. A mirror not in place
// (its first clone runs or failed) has no repository and so no pins: its
// view shows its state and last error. /ui/static/ serves the page's
// files, never a listing of them. /ui/queues/ mounts the
// task queues' monitor (asynqmon, built by cmd) for admin tokens, read-only.
//
// Who may look: a token of any role, sent as the bearer header or kept by
// the login form in a cookie (__Host-, Secure, HttpOnly, SameSite=Strict,
// Path=/). The login and logout forms carry a double-submit CSRF token (a
// SameSite=Strict cookie and a form field that must match, and an Origin,
// when sent, of this host), so another site can neither log a browser in
// nor out; a CSRF cookie not of the shape the page sets (32 random bytes,
// base64url) is refused with 400 before it is compared. A token never travels in a URL: the forms post, and a login by
// GET is refused. Every answer is Cache-Control: no-store with a
// Content-Security-Policy that allows no script on the page (the queue
// monitor's own scripts are allowed by their hashes) and no framing.
//
// ui imports access (grants), mirrors (the project object) and refs; its
// data and its caller's grant come through the interfaces and functions of
// Config, so it runs no git and opens no Redis itself. Only cmd imports
// it; api mounts what cmd built.
package ui
