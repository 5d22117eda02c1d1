package client

import (
	"context"
	"net/http"
)

// Healthz answers nil while the process runs. Probes are not retried.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/healthz", noRetry: true}, nil)
	return err
}

// Readyz answers nil when the service's Redis answers and its repos root is
// readable, else an *Error with status 503. Probes are not retried.
func (c *Client) Readyz(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/readyz", noRetry: true}, nil)
	return err
}
