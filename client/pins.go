package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// projectPath is /api/v1/projects/<project> with the name's slashes
// written as %2F, as the contract asks.
func projectPath(project string) string {
	return "/api/v1/projects/" + url.PathEscape(project)
}

func pinPath(project string, pipelineID int64, tail string) string {
	return projectPath(project) + "/pipelines/" + strconv.FormatInt(pipelineID, 10) + tail
}

// Pin pins pipeline pipelineID of project (PUT …/pipelines/{id}/ref).
// created is true for 201 (the ref was created now) and false for 200 (it
// already existed at that SHA; a finished pin is pinned again).
func (c *Client) Pin(ctx context.Context, project string, pipelineID int64, req PinRequest) (pin *Pin, created bool, err error) {
	pin = new(Pin)
	status, err := c.do(ctx, request{method: http.MethodPut, path: pinPath(project, pipelineID, "/ref"), body: req}, pin)
	if err != nil {
		return nil, false, err
	}
	return pin, status == http.StatusCreated, nil
}

// GetPin answers the pin of a pipeline, also a deleted one while its record
// is kept; CodePinNotFound when there is none.
func (c *Client) GetPin(ctx context.Context, project string, pipelineID int64) (*Pin, error) {
	pin := new(Pin)
	if _, err := c.do(ctx, request{method: http.MethodGet, path: pinPath(project, pipelineID, "/ref")}, pin); err != nil {
		return nil, err
	}
	return pin, nil
}

// Finish releases a pin; status ("success", "failed", …) is informational
// and may be empty. Finishing twice keeps the first finished_at.
func (c *Client) Finish(ctx context.Context, project string, pipelineID int64, status string) (*Pin, error) {
	r := request{method: http.MethodPost, path: pinPath(project, pipelineID, "/finish")}
	if status != "" {
		r.body = finishBody{Status: status}
	}
	pin := new(Pin)
	if _, err := c.do(ctx, r, pin); err != nil {
		return nil, err
	}
	return pin, nil
}

// DeletePin deletes a pipeline's ref now, whatever its state;
// CodePinNotFound when there is neither pin nor ref.
func (c *Client) DeletePin(ctx context.Context, project string, pipelineID int64) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: pinPath(project, pipelineID, "/ref")}, nil)
	return err
}

// ListPins answers one page of a project's pins, newest first.
func (c *Client) ListPins(ctx context.Context, project string, opts ListOptions) (*PinPage, error) {
	q := url.Values{}
	if opts.State != "" {
		q.Set("state", string(opts.State))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	page := new(PinPage)
	if _, err := c.do(ctx, request{method: http.MethodGet, path: projectPath(project) + "/pipelines", query: q}, page); err != nil {
		return nil, err
	}
	return page, nil
}

// AllPins walks every page from opts.Cursor on, following next_cursor; opts.Limit
// is the page size. It stops at the first error, which it yields.
func (c *Client) AllPins(ctx context.Context, project string, opts ListOptions) iter.Seq2[Pin, error] {
	return func(yield func(Pin, error) bool) {
		for {
			page, err := c.ListPins(ctx, project, opts)
			if err != nil {
				yield(Pin{}, err)
				return
			}
			for _, p := range page.Pins {
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

// CloseMergeRequest says merge request iid was merged or closed: its
// finished pins expire now, its pinned ones as soon as they are finished.
// It answers the merge request's pins.
func (c *Client) CloseMergeRequest(ctx context.Context, project string, iid int64) ([]Pin, error) {
	var out pinsBody
	path := projectPath(project) + "/merge_requests/" + strconv.FormatInt(iid, 10) + "/close"
	if _, err := c.do(ctx, request{method: http.MethodPost, path: path}, &out); err != nil {
		return nil, err
	}
	return out.Pins, nil
}

// GC runs one sweep over every project and answers when it is done.
func (c *Client) GC(ctx context.Context) (*GCResult, error) {
	res := new(GCResult)
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/gc"}, res); err != nil {
		return nil, err
	}
	return res, nil
}
