package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// PutMirror registers project as a mirror of req.Upstream, or takes over a
// changed upstream, host or credential of an existing one. accepted is true
// for 202 (the first fetch runs; State is cloning) and false for 200 (the
// mirror existed). CodeProjectConflict for a local project.
func (c *Client) PutMirror(ctx context.Context, project string, req MirrorRequest) (p *Project, accepted bool, err error) {
	p = new(Project)
	status, err := c.do(ctx, request{method: http.MethodPut, path: projectPath(project), body: req}, p)
	if err != nil {
		return nil, false, err
	}
	return p, status == http.StatusAccepted, nil
}

// GetProject answers a project, local or mirror; CodeProjectNotFound when
// there is none.
func (c *Client) GetProject(ctx context.Context, project string) (*Project, error) {
	p := new(Project)
	if _, err := c.do(ctx, request{method: http.MethodGet, path: projectPath(project)}, p); err != nil {
		return nil, err
	}
	return p, nil
}

// ListProjects answers one page of every project, local and mirror.
func (c *Client) ListProjects(ctx context.Context, opts ProjectListOptions) (*ProjectPage, error) {
	q := url.Values{}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	page := new(ProjectPage)
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/projects", query: q}, page); err != nil {
		return nil, err
	}
	return page, nil
}

// AllProjects walks every page from opts.Cursor on, following next_cursor.
// It stops at the first error, which it yields.
func (c *Client) AllProjects(ctx context.Context, opts ProjectListOptions) iter.Seq2[Project, error] {
	return func(yield func(Project, error) bool) {
		for {
			page, err := c.ListProjects(ctx, opts)
			if err != nil {
				yield(Project{}, err)
				return
			}
			for _, p := range page.Projects {
				if !yield(p, nil) {
					return
				}
			}
			if page.NextCursor == nil || *page.NextCursor == "" {
				return
			}
			opts.Cursor = *page.NextCursor
		}
	}
}

// DeleteProject removes a mirror, its refs and its pins' records;
// CodeProjectConflict for a local project.
func (c *Client) DeleteProject(ctx context.Context, project string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: projectPath(project)}, nil)
	return err
}
