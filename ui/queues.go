package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
)

// QueuesRoot is where the task queues' monitor is mounted; cmd builds it
// with this root path.
const QueuesRoot = "/ui/queues"

// queuesRefused are GET routes of the monitor that are not read-only
// views: its metrics route asks a Prometheus server of its own option
// (none here) over the network.
var queuesRefused = []string{QueuesRoot + "/api/metrics"}

// queues serves the monitor to admin tokens, read-only: any method but GET
// and HEAD is refused here, before the monitor sees it (it has pause,
// delete, archive and run routes).
func (h *handler) queues(w http.ResponseWriter, r *http.Request) {
	c, st := h.identify(r)
	if c == nil {
		h.unauthenticated(w, r, st)
		return
	}
	if !c.Admin {
		h.fail(w, r, c, http.StatusForbidden, fmt.Sprintf("The task queues are for admin tokens; yours (%s) is role %s.", c.Name, c.Role))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, c, http.StatusMethodNotAllowed, "The task queues are shown read-only: nothing can be changed here.")
		return
	}
	if h.cfg.Queues == nil {
		h.fail(w, r, c, http.StatusNotFound, "The task queues' monitor is off in this process.")
		return
	}
	for _, p := range queuesRefused {
		if strings.HasPrefix(r.URL.Path, p) {
			h.fail(w, r, c, http.StatusNotFound, "Not served here.")
			return
		}
	}
	// The monitor gets neither the token nor the cookies.
	r = r.Clone(r.Context())
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")
	w.Header().Set("Content-Security-Policy", h.queuesCSP)
	h.cfg.Queues.ServeHTTP(w, r)
}

// inlineScript is an inline <script> element's text.
var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// queuesPolicy is the monitor's Content-Security-Policy: its scripts from
// here, its two inline ones by their hashes (read from its page, so an
// upgrade that changes them still works), the inline styles its widgets
// set, data: images, requests to here only; never framed.
func queuesPolicy(monitor http.Handler) (string, error) {
	rec := httptest.NewRecorder()
	monitor.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, QueuesRoot+"/", nil))
	if rec.Code != http.StatusOK {
		return "", fmt.Errorf("ui: the queue monitor's page answered %d", rec.Code)
	}
	var hashes []string
	for _, m := range inlineScript.FindAllStringSubmatch(rec.Body.String(), -1) {
		sum := sha256.Sum256([]byte(m[1]))
		hashes = append(hashes, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return "default-src 'self'; script-src 'self' " + strings.Join(hashes, " ") +
		"; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'", nil
}
