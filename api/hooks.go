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

// mountHooks adds POST /hooks/<host> for every host. A host's route is on
// while a secret covers it, asked per request (the access file may gain or
// lose its hooks entries while the process runs); off, it answers 404 like
// no route at all. They take no bearer token: each host signs its
// deliveries.
func (h *handlers) mountHooks(e *echo.Echo, wh Webhooks) {
	if wh == nil {
		return
	}
	for _, host := range hooks.Hosts() {
		e.POST("/hooks/"+string(host), func(c echo.Context) error { return h.hook(c, wh, host) })
	}
}

func (h *handlers) hook(c echo.Context, wh Webhooks, host hooks.Host) error {
	if !wh.Enabled(host) {
		return echo.ErrNotFound
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	answer, err := wh.Receive(c.Request().Context(), host, c.Request().Header, body, h.renderHook)
	if err != nil {
		return err
	}
	if answer, err = withoutFetchTokens(answer); err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, answer)
}

// renderHook writes a delivery's result; a failure's reason starts with the
// error code an API call would have answered. Its pins carry no fetch
// token: hosts keep answers in delivery logs that many people read.
func (h *handlers) renderHook(res hooks.Result) ([]byte, error) {
	pins := h.pinsJSON(res.Pins)
	for i := range pins {
		pins[i].FetchToken = nil
	}
	out := hookJSON{Action: string(res.Action), Reason: res.Reason, Pins: pins}
	if res.Err != nil {
		he := toHTTPError(res.Err)
		out.Reason = he.Code + ": " + he.Message
	}
	return json.Marshal(out)
}

// withoutFetchTokens clears the fetch tokens of an answer about to be
// sent: a delivery remembered before answers stopped carrying them is
// replayed with fetch_token null too. A new answer has none already and
// goes out as rendered.
func withoutFetchTokens(answer []byte) ([]byte, error) {
	var out hookJSON
	if err := json.Unmarshal(answer, &out); err != nil {
		return nil, err
	}
	scrubbed := false
	for i := range out.Pins {
		if out.Pins[i].FetchToken != nil {
			out.Pins[i].FetchToken, scrubbed = nil, true
		}
	}
	if !scrubbed {
		return answer, nil
	}
	return json.Marshal(out)
}
