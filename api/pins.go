package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/githttp"
	"github.com/refkeeper/refkeeper/refs"
)

// Pins is what the API needs from the domain; *refs.Service has it.
type Pins interface {
	Pin(ctx context.Context, req refs.PinRequest) (refs.Pin, bool, error)
	Get(ctx context.Context, p refs.Project, id refs.PipelineID) (refs.Pin, error)
	Finish(ctx context.Context, p refs.Project, id refs.PipelineID) (refs.Pin, error)
	Delete(ctx context.Context, p refs.Project, id refs.PipelineID) error
	List(ctx context.Context, p refs.Project, st refs.State, cursor string, limit int) ([]refs.Pin, string, error)
	CloseMergeRequest(ctx context.Context, p refs.Project, iid refs.MergeRequestIID) ([]refs.Pin, error)
	Sweep(ctx context.Context) (refs.SweepResult, error)
	SweepAll(ctx context.Context) (refs.SweepResult, error)
	RepoPath(p refs.Project) (string, error)
	Ancestors(ctx context.Context, p refs.Project, sha refs.ObjectID, limit int) ([]refs.ObjectID, error)
	Ready(ctx context.Context) error
}

// pinJSON is the contract's pin object.
type pinJSON struct {
	Project         string  `json:"project"`
	PipelineID      int64   `json:"pipeline_id"`
	Ref             string  `json:"ref"`
	SHA             string  `json:"sha"`
	Refspec         string  `json:"refspec"`
	FetchURL        string  `json:"fetch_url"`
	FetchToken      *string `json:"fetch_token"`
	MergeRequestIID *int64  `json:"merge_request_iid"`
	State           string  `json:"state"`
	CreatedAt       string  `json:"created_at"`
	FinishedAt      *string `json:"finished_at"`
	ExpiresAt       *string `json:"expires_at"`
	// Merge is null unless the service computed the merge.
	Merge *mergeJSON `json:"merge"`
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func optionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

func (h *handlers) pinJSON(p refs.Pin) pinJSON {
	ref := p.Ref().String()
	out := pinJSON{
		Project:    string(p.Project),
		PipelineID: int64(p.PipelineID),
		Ref:        ref,
		SHA:        string(p.SHA),
		Refspec:    "+" + ref + ":" + ref,
		FetchURL:   h.fetchURL(p.Project),
		State:      string(p.State),
		CreatedAt:  formatTime(p.CreatedAt),
		FinishedAt: optionalTime(p.FinishedAt),
		ExpiresAt:  optionalTime(p.ExpiresAt),
		Merge:      mergeOf(p),
	}
	if p.MergeRequestIID != 0 {
		iid := int64(p.MergeRequestIID)
		out.MergeRequestIID = &iid
	}
	if p.State != refs.StateDeleted {
		token := h.signer.Sign(p)
		out.FetchToken = &token
	}
	return out
}

func (h *handlers) pinsJSON(pins []refs.Pin) []pinJSON {
	out := make([]pinJSON, 0, len(pins))
	for _, p := range pins {
		out = append(out, h.pinJSON(p))
	}
	return out
}

// fetchURL is where runners fetch a project from.
func (h *handlers) fetchURL(p refs.Project) string {
	return h.fetchBase + "/git/" + string(p) + ".git"
}

type handlers struct {
	pins      Pins
	signer    *githttp.FetchSigner
	fetchBase string
}

// projectParam reads {project}: URL-escaped, "/" written as %2F.
func projectParam(c echo.Context) (refs.Project, error) {
	// echo routes on the escaped path when the request's differs from the
	// decoded one (a %2F in it) and then hands out escaped parameters, and
	// on the decoded path otherwise. Decode exactly once either way:
	// group%252Fapp names "group%2Fapp", never group/app, so a proxy rule
	// written against %2F paths means what it says.
	raw := c.Param("project")
	if c.Request().URL.RawPath != "" {
		var err error
		if raw, err = url.PathUnescape(raw); err != nil {
			return "", badRequest("invalid project: %v", err)
		}
	}
	return refs.ParseProject(raw)
}

// pipelineParams reads {project} and {id}.
func pipelineParams(c echo.Context) (refs.Project, refs.PipelineID, error) {
	p, err := projectParam(c)
	if err != nil {
		return "", 0, err
	}
	id, err := refs.ParsePipelineID(c.Param("id"))
	return p, id, err
}

// pinBody is PUT …/ref. merge_request_iid stays raw so that only a plain
// positive JSON integer is accepted (not "12", 1.5, 1e3 or -1).
type pinBody struct {
	SHA             *string         `json:"sha"`
	MergeRequestIID json.RawMessage `json:"merge_request_iid"`
	Merge           json.RawMessage `json:"merge"` // see parseMerge
}

func parseIID(raw json.RawMessage) (refs.MergeRequestIID, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	iid, err := refs.ParseMergeRequestIID(string(raw))
	if err != nil {
		return 0, badRequest("merge_request_iid must be an integer from 1 to 9223372036854775807")
	}
	return iid, nil
}

func (h *handlers) putPin(c echo.Context) error {
	p, id, err := pipelineParams(c)
	if err != nil {
		return err
	}
	var in pinBody
	if err := decodeBody(c, &in, false); err != nil {
		return err
	}
	req := refs.PinRequest{Project: p, PipelineID: id}
	if req.MergeRequestIID, err = parseIID(in.MergeRequestIID); err != nil {
		return err
	}
	if req.Merge, err = parseMerge(in.Merge, req.MergeRequestIID); err != nil {
		return err
	}
	if in.SHA != nil && req.Merge != nil {
		return badRequest("give sha or merge, not both")
	}
	if in.SHA != nil {
		if req.SHA, err = refs.ParseObjectID(*in.SHA); err != nil {
			return err
		}
	}
	if req.SHA == "" && req.MergeRequestIID == 0 && req.Merge == nil {
		return badRequest("give sha, or merge_request_iid to pin what its merge ref points at")
	}
	pin, created, err := h.pins.Pin(c.Request().Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, h.pinJSON(pin))
}

func (h *handlers) getPin(c echo.Context) error {
	p, id, err := pipelineParams(c)
	if err != nil {
		return err
	}
	pin, err := h.pins.Get(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.pinJSON(pin))
}

// finishBody is POST …/finish; status is informational.
type finishBody struct {
	Status *string `json:"status"`
}

const maxStatusLen = 64

func (h *handlers) finish(c echo.Context) error {
	p, id, err := pipelineParams(c)
	if err != nil {
		return err
	}
	var in finishBody
	if err := decodeBody(c, &in, true); err != nil {
		return err
	}
	if in.Status != nil && len(*in.Status) > maxStatusLen {
		return badRequest("status is longer than %d characters", maxStatusLen)
	}
	pin, err := h.pins.Finish(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h.pinJSON(pin))
}

func (h *handlers) deletePin(c echo.Context) error {
	p, id, err := pipelineParams(c)
	if err != nil {
		return err
	}
	if err := h.pins.Delete(c.Request().Context(), p, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type listJSON struct {
	Pins       []pinJSON `json:"pins"`
	NextCursor *string   `json:"next_cursor"`
}

const defaultListLimit = 100

func (h *handlers) list(c echo.Context) error {
	p, err := projectParam(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	var st refs.State
	if s := q.Get("state"); s != "" || q.Has("state") {
		if st, err = refs.ParseState(s); err != nil {
			return err
		}
	}
	limit := defaultListLimit
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > refs.MaxListLimit || strconv.Itoa(n) != s {
			return badRequest("limit must be an integer from 1 to %d", refs.MaxListLimit)
		}
		limit = n
	}
	pins, next, err := h.pins.List(c.Request().Context(), p, st, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	out := listJSON{Pins: h.pinsJSON(pins)}
	if next != "" {
		out.NextCursor = &next
	}
	return c.JSON(http.StatusOK, out)
}

type pinsJSON struct {
	Pins []pinJSON `json:"pins"`
}

func (h *handlers) closeMergeRequest(c echo.Context) error {
	p, err := projectParam(c)
	if err != nil {
		return err
	}
	iid, err := refs.ParseMergeRequestIID(c.Param("iid"))
	if err != nil {
		return err
	}
	if _, err := readBody(c); err != nil { // no body expected; still bounded
		return err
	}
	pins, err := h.pins.CloseMergeRequest(c.Request().Context(), p, iid)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pinsJSON{Pins: h.pinsJSON(pins)})
}

type sweepJSON struct {
	refs.SweepResult
	DurationMS int64 `json:"duration_ms"`
}

func (h *handlers) gc(c echo.Context) error {
	if _, err := readBody(c); err != nil {
		return err
	}
	// A requested sweep lists every project's refs (adoption) unless asked
	// to do only what the periodic sweep does (?reconcile=auto).
	sweep := h.pins.SweepAll
	switch c.QueryParam("reconcile") {
	case "", "always":
	case "auto":
		sweep = h.pins.Sweep
	default:
		return badRequest("reconcile must be always or auto")
	}
	res, err := sweep(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sweepJSON{SweepResult: res, DurationMS: res.Duration.Milliseconds()})
}

func (h *handlers) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handlers) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := h.pins.Ready(ctx); err != nil {
		if !refs.IsUnavailable(err) {
			err = &refs.UnavailableError{Op: "readiness", Cause: err}
		}
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
