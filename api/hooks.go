package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/hooks"
)

// Webhooks is what the hook routes need; *hooks.Receiver has it.
type Webhooks interface {
	Enabled(h hooks.Host) bool
	Receive(ctx context.Context, h hooks.Host, header http.Header, body []byte, render hooks.Render) ([]byte, error)
}

// hookJSON is the answer to every delivery that is not an error.
type hookJSON struct {
	Action string    `json:"action"`
	Reason string    `json:"reason"`
	Pins   []pinJSON `json:"pins"`
}

// mountHooks adds POST /hooks/<host> for every host whose secret is set; the
// others are no route at all (404). They take no bearer token: each host
// signs its deliveries.
func (h *handlers) mountHooks(e *echo.Echo, wh Webhooks) {
	if wh == nil {
		return
	}
	for _, host := range hooks.Hosts() {
		if !wh.Enabled(host) {
			continue
		}
		e.POST("/hooks/"+string(host), func(c echo.Context) error { return h.hook(c, wh, host) })
	}
}

func (h *handlers) hook(c echo.Context, wh Webhooks, host hooks.Host) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	answer, err := wh.Receive(c.Request().Context(), host, c.Request().Header, body, h.renderHook)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, answer)
}

// renderHook writes a delivery's result; a failure's reason starts with the
// error code an API call would have answered.
func (h *handlers) renderHook(res hooks.Result) ([]byte, error) {
	out := hookJSON{Action: string(res.Action), Reason: res.Reason, Pins: h.pinsJSON(res.Pins)}
	if res.Err != nil {
		he := toHTTPError(res.Err)
		out.Reason = he.Code + ": " + he.Message
	}
	return json.Marshal(out)
}
