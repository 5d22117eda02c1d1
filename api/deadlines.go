package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// DefaultBodyTimeout is how long the body of an API or webhook request may
// take to arrive: at most 64 KiB, which any client sends in well under a
// second.
const DefaultBodyTimeout = 10 * time.Second

// bodyDeadline bounds how long a request's body takes to arrive, so a
// client sending it byte by byte holds no handler (nor the Redis lease or
// lock a handler may take after it): /api/ and /hooks/ bodies (at most 64
// KiB) within apiBody; a runner's fetch negotiation below /git/ (up to 32
// MiB, from a runner on a slow link) within gitBody, the bound of the git
// http-backend that serves it. Past it the read fails and the request is
// answered 408.
//
// The deadline is the connection's read deadline, set only for a request
// that has a body. net/http clears it once the body is read whole (it then
// starts its own background read of the connection), so the answer that
// follows is not held to it: a fetch streaming its pack for minutes, a pin
// waiting for its upstream. A request with no body gets none.
func bodyDeadline(apiBody, gitBody time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if r := c.Request(); r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
				d := apiBody
				if strings.HasPrefix(r.URL.Path, "/git/") {
					d = gitBody
				}
				// A writer without deadlines (a test's recorder) just has none.
				_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(d))
			}
			return next(c)
		}
	}
}
