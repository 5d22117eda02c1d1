package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

// Projects is what the API needs to keep mirrors; *mirrors.Projects has it.
type Projects interface {
	Register(ctx context.Context, req mirrors.MirrorRequest) (mirrors.ProjectInfo, bool, error)
	Get(ctx context.Context, p refs.Project) (mirrors.ProjectInfo, error)
	List(ctx context.Context, cursor string, limit int, visible func(refs.Project) bool) ([]mirrors.ProjectInfo, string, error)
	Delete(ctx context.Context, p refs.Project) error
}

// projectJSON is the contract's project object; the upstream fields are
// null for a local project.
type projectJSON struct {
	Project    string  `json:"project"`
	Kind       string  `json:"kind"`
	State      string  `json:"state"`
	Upstream   *string `json:"upstream"`
	Host       *string `json:"host"`
	Credential *string `json:"credential"`
	FetchedAt  *string `json:"fetched_at"`
	LastError  *string `json:"last_error"`
}

func optionalString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toProjectJSON(pi mirrors.ProjectInfo) projectJSON {
	out := projectJSON{Project: string(pi.Project), Kind: string(pi.Kind), State: string(pi.State),
		LastError: optionalString(pi.LastError)}
	if pi.Kind == mirrors.KindMirror {
		out.Upstream = optionalString(pi.Upstream)
		out.Host = optionalString(string(pi.Host))
		out.Credential = optionalString(pi.Credential)
		if !pi.FetchedAt.IsZero() {
			out.FetchedAt = optionalTime(pi.FetchedAt.Truncate(time.Second))
		}
	}
	return out
}

// mirrorBody is PUT /api/v1/projects/{project}.
type mirrorBody struct {
	Upstream   *string `json:"upstream"`
	Host       *string `json:"host"`
	Credential *string `json:"credential"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type projectHandlers struct {
	projects Projects
}

func (h *projectHandlers) put(c echo.Context) error {
	p, err := projectParam(c)
	if err != nil {
		return err
	}
	var in mirrorBody
	if err := decodeBody(c, &in, false); err != nil {
		return err
	}
	if in.Upstream == nil {
		return badRequest("upstream is required")
	}
	info, cloning, err := h.projects.Register(c.Request().Context(), mirrors.MirrorRequest{
		Project: p, Upstream: *in.Upstream, Host: deref(in.Host), Credential: deref(in.Credential)})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if cloning {
		status = http.StatusAccepted
	}
	return c.JSON(status, toProjectJSON(info))
}

func (h *projectHandlers) get(c echo.Context) error {
	p, err := projectParam(c)
	if err != nil {
		return err
	}
	info, err := h.projects.Get(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProjectJSON(info))
}

type projectListJSON struct {
	Projects   []projectJSON `json:"projects"`
	NextCursor *string       `json:"next_cursor"`
}

func (h *projectHandlers) list(c echo.Context) error {
	q := c.QueryParams()
	limit := defaultListLimit
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > refs.MaxListLimit || strconv.Itoa(n) != s {
			return badRequest("limit must be an integer from 1 to %d", refs.MaxListLimit)
		}
		limit = n
	}
	// Only the projects the caller may read are listed, and the cursor is
	// the last of them: the names of the others never leave the server.
	g := callerGrant(c)
	visible := func(p refs.Project) bool { return g.May(access.ReadPins, p) }
	infos, cursor, err := h.projects.List(c.Request().Context(), q.Get("cursor"), limit, visible)
	if err != nil {
		return err
	}
	out := projectListJSON{Projects: []projectJSON{}}
	for _, pi := range infos {
		out.Projects = append(out.Projects, toProjectJSON(pi))
	}
	out.NextCursor = optionalString(cursor)
	return c.JSON(http.StatusOK, out)
}

func (h *projectHandlers) delete(c echo.Context) error {
	p, err := projectParam(c)
	if err != nil {
		return err
	}
	if err := h.projects.Delete(c.Request().Context(), p); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
