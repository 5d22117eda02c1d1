package ui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

//go:embed templates/*.html static/*
var files embed.FS

// Projects is what the page reads of projects; *mirrors.Projects has it.
type Projects interface {
	Get(ctx context.Context, p refs.Project) (mirrors.ProjectInfo, error)
	List(ctx context.Context, cursor string, limit int, visible func(refs.Project) bool) ([]mirrors.ProjectInfo, string, error)
}

// Pins is what the page reads of pins; *refs.Service has it.
type Pins interface {
	List(ctx context.Context, p refs.Project, st refs.State, cursor string, limit int) ([]refs.Pin, string, error)
}

// Authenticator answers what a presented API token may do; false for an
// unknown one. The API's own (admin tokens and the access file's).
type Authenticator func(token string) (access.Grant, bool)

// Config is what New needs.
type Config struct {
	Projects     Projects      // required
	Pins         Pins          // required
	Authenticate Authenticator // required
	// Sizes answers the mirrors' sizes on disk (a snapshot; nil: not shown).
	Sizes func() map[refs.Project]int64
	// Queues is the task queues' monitor served at /ui/queues/ to admin
	// tokens, read-only (GET and HEAD only); nil: 404 there.
	Queues http.Handler
	// MaxAge is --max-age: when a pinned pin goes at the latest.
	MaxAge time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Now: nil means time.Now.
	Now func() time.Time
}

// handler serves /ui/.
type handler struct {
	cfg       Config
	pages     *template.Template
	queuesCSP string
}

// New builds the handler of /ui/ and everything below it. The caller
// mounts it at /ui/ (and /ui, which it redirects).
func New(cfg Config) (http.Handler, error) {
	if cfg.Projects == nil || cfg.Pins == nil || cfg.Authenticate == nil {
		return nil, errors.New("ui: Projects, Pins and Authenticate are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := template.ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg, pages: pages}
	if cfg.Queues != nil {
		if h.queuesCSP, err = queuesPolicy(cfg.Queues); err != nil {
			return nil, err
		}
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ui/{$}", h.page)
	mux.HandleFunc("POST /ui/login", h.login)
	mux.HandleFunc("POST /ui/logout", h.logout)
	mux.Handle("GET /ui/static/", h.staticFiles(static))
	mux.HandleFunc("/ui/queues/", h.queues)
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return secureHeaders(mux), nil
}

// pagePolicy is the Content-Security-Policy of every page of ours: no
// script at all, styles and images from here only, forms post here only,
// never framed.
const pagePolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secureHeaders sets what every answer under /ui/ carries: nothing is
// cached (pages show what a token may see), nothing sniffed, no referrer
// sent to other sites, no framing, and the page policy (the queue monitor sets its own).
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer a browser
		// posts forms with "Origin: null", and the login form's origin
		// check needs the real one.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Content-Security-Policy", pagePolicy)
		next.ServeHTTP(w, r)
	})
}

// render writes a template with status; a failure is logged (the status
// is out already).
func (h *handler) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := h.pages.ExecuteTemplate(w, name, data); err != nil {
		h.cfg.Logger.Warn("rendering a page", "page", name, "err", err)
	}
}

// errorPage is the "error" template's data.
type errorPage struct {
	Title   string
	Caller  *caller
	CSRF    string
	Status  string
	Message string
}

// fail answers an error page.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, c *caller, status int, message string) {
	csrf := ""
	if c != nil && c.ByCookie {
		csrf = csrfToken(w, r)
	}
	h.render(w, status, "error", errorPage{Title: http.StatusText(status), Caller: c, CSRF: csrf,
		Status: http.StatusText(status), Message: message})
}

// staticFiles serves the page's files below /ui/static/ and nothing else:
// a directory (the file server would list it) or a missing file is the
// page's 404.
func (h *handler) staticFiles(static fs.FS) http.Handler {
	serve := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/ui/static/")
		if info, err := fs.Stat(static, name); err != nil || info.IsDir() {
			h.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
			return
		}
		serve.ServeHTTP(w, r)
	})
}
