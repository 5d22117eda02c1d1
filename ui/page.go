package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

const (
	// projectsPerPage and pinsPerPage bound one page.
	projectsPerPage = 200
	pinsPerPage     = 100
	// maxScan bounds the pins read to fill a page filtered by merge
	// request (the store indexes pins by state, not by merge request).
	maxScan = 5000
	// maxParam bounds a filter's text.
	maxParam = 512
)

// filter is the page's query string: every view is a link.
type filter struct {
	Query         string // project name contains
	Project       string // the project whose pins are shown
	State         string // pinned, finished, deleted or "" (any)
	MR            string // merge request iid
	Cursor        string // pins: where the page starts
	ProjectCursor string // projects: where the page starts
}

func (f filter) link(change func(*filter)) string {
	g := f
	change(&g)
	v := url.Values{}
	for k, s := range map[string]string{"q": g.Query, "project": g.Project, "state": g.State, "mr": g.MR,
		"cursor": g.Cursor, "pcursor": g.ProjectCursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return "/ui/"
	}
	return "/ui/?" + v.Encode()
}

// parsedFilter is a filter checked.
type parsedFilter struct {
	filter
	project refs.Project // "" when none
	state   refs.State
	mr      refs.MergeRequestIID
}

// badFilter is a query parameter the page cannot take.
type badFilter struct{ msg string }

func (e *badFilter) Error() string { return e.msg }

func parseFilter(q url.Values) (parsedFilter, error) {
	f := parsedFilter{filter: filter{Query: q.Get("q"), Project: q.Get("project"), State: q.Get("state"), MR: q.Get("mr"),
		Cursor: q.Get("cursor"), ProjectCursor: q.Get("pcursor")}}
	for _, s := range []string{f.Query, f.Project, f.State, f.MR, f.Cursor, f.ProjectCursor} {
		if len(s) > maxParam {
			return f, &badFilter{fmt.Sprintf("A filter is longer than %d bytes.", maxParam)}
		}
	}
	var err error
	if f.Project != "" {
		if f.project, err = refs.ParseProject(f.Project); err != nil {
			return f, &badFilter{"project: " + err.Error()}
		}
	}
	if f.State != "" {
		if f.state, err = refs.ParseState(f.State); err != nil {
			return f, &badFilter{"state: pinned, finished or deleted (or none for any)"}
		}
	}
	if f.MR = strings.TrimSpace(f.MR); f.MR != "" {
		if f.mr, err = refs.ParseMergeRequestIID(f.MR); err != nil {
			return f, &badFilter{"mr: a merge request number, like 12"}
		}
	}
	return f, nil
}

// pageData is the "page" template's data.
type pageData struct {
	Title        string
	Caller       *caller
	CSRF         string
	Filter       filter
	Projects     []projectRow
	NextProjects string
	Pins         *pinTable
}

type projectRow struct {
	Name, Link, Kind, State, Upstream, Host, LastError string
	FetchedAt, FetchedAgo                              string
	Size                                               string
}

type pinTable struct {
	Project string
	// State and LastError are the project's when it is a mirror not in
	// place (cloning or failed): it has no repository yet, so no pins.
	State, LastError string
	Rows             []pinRow
	Next             string
	Scanned          int // pins read to fill a page filtered by merge request, when it is not full
}

type pinRow struct {
	PipelineID   int64
	State        string
	Adopted      bool
	SHA          string
	CreatedAt    string
	Age          string
	Expiry       string
	MergeRequest int64
	Merge        *mergeInputs
}

type mergeInputs struct{ Mode, Source, Target string }

// page answers GET /ui/: the caller's projects and, with ?project=, its pins.
func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	c, st := h.identify(r)
	if c == nil {
		h.unauthenticated(w, r, st)
		return
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		h.fail(w, r, c, http.StatusBadRequest, err.Error())
		return
	}
	if f.project != "" && !c.grant.May(access.ReadPins, f.project) {
		h.fail(w, r, c, http.StatusForbidden, fmt.Sprintf("Your token (%s, role %s) does not cover %s.", c.Name, c.Role, f.Project))
		return
	}
	ctx := r.Context()
	data := pageData{Title: "Projects", Caller: c, Filter: f.filter}
	if c.ByCookie {
		data.CSRF = csrfToken(w, r)
	}
	visible := func(p refs.Project) bool {
		return c.grant.May(access.ReadPins, p) && strings.Contains(string(p), f.Query)
	}
	infos, next, err := h.cfg.Projects.List(ctx, f.ProjectCursor, projectsPerPage, visible)
	if err != nil {
		h.failWith(w, r, c, err)
		return
	}
	var sizes map[refs.Project]int64
	if h.cfg.Sizes != nil {
		sizes = h.cfg.Sizes()
	}
	now := h.cfg.Now()
	for _, pi := range infos {
		row := projectRow{Name: string(pi.Project), Kind: string(pi.Kind), State: string(pi.State),
			Upstream: pi.Upstream, Host: string(pi.Host), LastError: pi.LastError, Size: "–",
			Link: f.link(func(g *filter) { g.Project, g.Cursor = string(pi.Project), "" })}
		if !pi.FetchedAt.IsZero() {
			row.FetchedAt = pi.FetchedAt.UTC().Format(time.RFC3339)
			row.FetchedAgo = span(now.Sub(pi.FetchedAt))
		}
		if size, ok := sizes[pi.Project]; ok {
			row.Size = bytesText(size)
		}
		data.Projects = append(data.Projects, row)
	}
	if next != "" {
		data.NextProjects = f.link(func(g *filter) { g.ProjectCursor = next })
	}
	if f.project != "" {
		info, err := h.cfg.Projects.Get(ctx, f.project)
		if err != nil {
			h.failWith(w, r, c, err)
			return
		}
		if info.State == mirrors.ProjectReady {
			if data.Pins, err = h.pinTable(r, f, now); err != nil {
				h.failWith(w, r, c, err)
				return
			}
		} else {
			// A mirror whose first clone runs or failed is a project
			// without a repository: the pin store would answer it
			// "not found", yet the page has its state and why.
			data.Pins = &pinTable{Project: f.Project, State: string(info.State), LastError: info.LastError}
		}
		data.Title = f.Project
	}
	h.render(w, http.StatusOK, "page", data)
}

// pinTable reads one page of the project's pins in the filter's state,
// and keeps those of its merge request when one is asked for.
func (h *handler) pinTable(r *http.Request, f parsedFilter, now time.Time) (*pinTable, error) {
	t := &pinTable{Project: f.Project}
	cursor, scanned := f.Cursor, 0
	for {
		limit := pinsPerPage
		if f.mr != 0 {
			limit = refs.MaxListLimit
		}
		pins, next, err := h.cfg.Pins.List(r.Context(), f.project, f.state, cursor, limit)
		if err != nil {
			return nil, err
		}
		scanned += len(pins)
		for _, p := range pins {
			if f.mr == 0 || p.MergeRequestIID == f.mr {
				t.Rows = append(t.Rows, h.pinRow(p, now))
			}
		}
		cursor = next
		if f.mr == 0 || next == "" || len(t.Rows) >= pinsPerPage || scanned >= maxScan {
			break
		}
	}
	if cursor != "" {
		t.Next = f.link(func(g *filter) { g.Cursor = cursor })
		if f.mr != 0 {
			t.Scanned = scanned
		}
	}
	return t, nil
}

func (h *handler) pinRow(p refs.Pin, now time.Time) pinRow {
	row := pinRow{PipelineID: int64(p.PipelineID), State: string(p.State), Adopted: p.Adopted, SHA: string(p.SHA),
		CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339), Age: span(now.Sub(p.CreatedAt)),
		MergeRequest: int64(p.MergeRequestIID)}
	if p.Merge != nil {
		row.Merge = &mergeInputs{Mode: string(p.Merge.Mode), Source: string(p.Merge.SourceSHA), Target: string(p.Merge.TargetSHA)}
	}
	row.Expiry = expiry(p, h.cfg.MaxAge, now)
	return row
}

// expiry says when a pin's ref goes: at expires_at for a finished pin, at
// max-age at the latest for any live one.
func expiry(p refs.Pin, maxAge time.Duration, now time.Time) string {
	if p.State == refs.StateDeleted {
		return "gone"
	}
	due, why := time.Time{}, ""
	if maxAge > 0 {
		due, why = p.CreatedAt.Add(maxAge), " (max-age)"
	}
	if p.State == refs.StateFinished && !p.ExpiresAt.IsZero() && (due.IsZero() || p.ExpiresAt.Before(due)) {
		due, why = p.ExpiresAt, ""
	}
	if due.IsZero() {
		return "when finished"
	}
	if !due.After(now) {
		return "due now" + why
	}
	return "in " + span(due.Sub(now)) + why
}

// failWith answers an error of the data sources.
func (h *handler) failWith(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	var (
		noProject   *refs.ProjectNotFoundError
		unavailable *refs.UnavailableError
		bad         *refs.InvalidInputError
	)
	switch {
	case errors.As(err, &noProject):
		h.fail(w, r, c, http.StatusNotFound, "No such project.")
	case errors.As(err, &bad):
		h.fail(w, r, c, http.StatusBadRequest, "The cursor is not one this page made.")
	case errors.As(err, &unavailable):
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, c, http.StatusServiceUnavailable, "Temporarily unavailable: reload in a moment.")
	default:
		h.cfg.Logger.Error("web page failed", "path", r.URL.Path, "err", err)
		h.fail(w, r, c, http.StatusInternalServerError, "Something went wrong; the log says what.")
	}
}

// span is a duration as people read it: the two largest units.
func span(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	days, d := d/(24*time.Hour), d%(24*time.Hour)
	hours, d := d/time.Hour, d%time.Hour
	mins, d := d/time.Minute, d%time.Minute
	secs := d / time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm %ds", mins, secs)
	}
	return fmt.Sprintf("%ds", secs)
}

// bytesText is a size in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
