package api

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/githttp"
	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

// Error codes of the contract's error table, plus the HTTP-level ones.
const (
	codeInvalidRequest   = "invalid_request"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeProjectNotFound  = "project_not_found"
	codePinNotFound      = "pin_not_found"
	codeRefConflict      = "ref_conflict"
	codeCommitNotFound   = "commit_not_found"
	codeMergeRefNotFound = "merge_ref_not_found"
	codeRefNotFound      = "ref_not_found"
	codeMergeConflict    = "merge_conflict"
	codePayloadTooLarge  = "payload_too_large"
	codeUnsupportedMedia = "unsupported_media_type"
	codeUnavailable      = "unavailable"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeInternal         = "internal"
	codeRateLimited      = "rate_limited"
	codeProjectConflict  = "project_conflict"
	codeUpstreamDown     = "upstream_unavailable"
	codeUpstreamRejected = "upstream_rejected"
	codeUpstreamRefused  = "upstream_not_allowed"
	codeNoStorage        = "insufficient_storage"
	codeRequestTimeout   = "request_timeout"
	retryAfterSeconds    = "5"
	internalMessage      = "internal error; see the server log"
)

// httpError is an answer the client may see (Status, Code, Message), apart
// from the cause that only goes to the log (Err).
type httpError struct {
	Status  int
	Code    string
	Message string
	// Conflicts are the paths of a merge_conflict (never nil for one), at
	// most gitops.MaxConflictPaths; ConflictsTotal counts them all.
	Conflicts      []string
	ConflictsTotal int
	Err            error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *httpError) Unwrap() error { return e.Err }

func badRequest(format string, args ...any) *httpError {
	return &httpError{Status: http.StatusBadRequest, Code: codeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	Conflicts *[]string `json:"conflicts,omitempty"`
	// ConflictsTotal is how many paths conflict; conflicts lists the
	// first of them.
	ConflictsTotal *int `json:"conflicts_total,omitempty"`
}

// toHTTPError is the one place where errors become status codes.
func toHTTPError(err error) *httpError {
	var (
		he          *httpError
		ee          *echo.HTTPError
		invalid     *refs.InvalidInputError
		noProject   *refs.ProjectNotFoundError
		noPin       *refs.PinNotFoundError
		conflict    *refs.RefConflictError
		noCommit    *refs.CommitNotFoundError
		noMergeRef  *refs.MergeRefNotFoundError
		noRef       *refs.RefNotFoundError
		mergeFailed *refs.MergeConflictError
		unavailable *refs.UnavailableError
		tooLarge    *http.MaxBytesError
		hookAuth    *hooks.UnauthorizedError
		hookBody    *hooks.MalformedError
		projConfl   *mirrors.ProjectConflictError
		upDown      *mirrors.UpstreamUnavailableError
		upRejected  *mirrors.UpstreamRejectedError
		upNoRef     *mirrors.UpstreamRefNotFoundError
		upRefused   *mirrors.UpstreamNotAllowedError
		gitRefused  *githttp.Error
		lowDisk     *limits.LowDiskError
	)
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &lowDisk):
		// Before unavailable, which wraps it: the contract's own code.
		return &httpError{Status: http.StatusInsufficientStorage, Code: codeNoStorage, Message: lowDisk.Error(), Err: err}
	case errors.As(err, &gitRefused):
		return &httpError{Status: gitRefused.Status, Code: gitErrorCode(gitRefused.Status), Message: gitRefused.Message}
	case errors.As(err, &invalid):
		return &httpError{Status: http.StatusBadRequest, Code: codeInvalidRequest, Message: invalid.Error()}
	case errors.As(err, &noProject):
		return &httpError{Status: http.StatusNotFound, Code: codeProjectNotFound, Message: noProject.Error()}
	case errors.As(err, &noPin):
		return &httpError{Status: http.StatusNotFound, Code: codePinNotFound, Message: noPin.Error()}
	case errors.As(err, &conflict):
		return &httpError{Status: http.StatusConflict, Code: codeRefConflict, Message: conflict.Error()}
	case errors.As(err, &noCommit):
		return &httpError{Status: http.StatusUnprocessableEntity, Code: codeCommitNotFound, Message: noCommit.Error()}
	case errors.As(err, &noMergeRef):
		return &httpError{Status: http.StatusUnprocessableEntity, Code: codeMergeRefNotFound, Message: noMergeRef.Error()}
	case errors.As(err, &projConfl):
		return &httpError{Status: http.StatusConflict, Code: codeProjectConflict, Message: projConfl.Error()}
	case errors.As(err, &upRefused):
		// One message whatever the reason: the detail is for the log.
		return &httpError{Status: http.StatusForbidden, Code: codeUpstreamRefused, Message: upRefused.Error(), Err: err}
	case errors.As(err, &upDown):
		return &httpError{Status: http.StatusServiceUnavailable, Code: codeUpstreamDown, Message: upDown.Error(), Err: err}
	case errors.As(err, &upRejected):
		return &httpError{Status: http.StatusBadGateway, Code: codeUpstreamRejected, Message: upRejected.Error(), Err: err}
	case errors.As(err, &upNoRef):
		return &httpError{Status: http.StatusUnprocessableEntity, Code: codeRefNotFound, Message: upNoRef.Error()}
	case errors.As(err, &noRef):
		return &httpError{Status: http.StatusUnprocessableEntity, Code: codeRefNotFound, Message: noRef.Error()}
	case errors.As(err, &mergeFailed):
		return &httpError{Status: http.StatusConflict, Code: codeMergeConflict, Message: mergeFailed.Error(),
			Conflicts: append([]string{}, mergeFailed.Paths...), ConflictsTotal: max(mergeFailed.Total, len(mergeFailed.Paths))}
	case errors.As(err, &unavailable):
		return &httpError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Message: unavailable.Op + ": temporarily unavailable, retry later", Err: err}
	case errors.As(err, &hookAuth):
		return &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: "missing or wrong webhook signature", Err: err}
	case errors.As(err, &hookBody):
		return &httpError{Status: http.StatusBadRequest, Code: codeInvalidRequest, Message: hookBody.Error()}
	case errors.As(err, &tooLarge):
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: codePayloadTooLarge,
			Message: fmt.Sprintf("request body is over %d bytes", tooLarge.Limit)}
	case errors.As(err, &ee):
		switch ee.Code {
		case http.StatusNotFound:
			return &httpError{Status: ee.Code, Code: codeNotFound, Message: noRouteMessage}
		case http.StatusMethodNotAllowed:
			return &httpError{Status: ee.Code, Code: codeMethodNotAllowed, Message: "method not allowed on this route"}
		case http.StatusRequestEntityTooLarge:
			return &httpError{Status: ee.Code, Code: codePayloadTooLarge, Message: "request body too large"}
		case http.StatusUnauthorized:
			return &httpError{Status: ee.Code, Code: codeUnauthorized, Message: "missing or wrong token"}
		}
		if ee.Code >= 400 && ee.Code < 500 {
			return &httpError{Status: ee.Code, Code: codeInvalidRequest, Message: http.StatusText(ee.Code)}
		}
	}
	return &httpError{Status: http.StatusInternalServerError, Code: codeInternal, Message: internalMessage, Err: err}
}

const noRouteMessage = "no such route"

// slashHint explains a path under /api/v1/projects/ that no route matched
// because the project's "/" was not written %2F (group/app instead of
// group%2Fapp, as the contract and GitLab's API write it): it names the
// path as it should be. Empty when the path has no such slash.
func slashHint(escapedPath string) string {
	const prefix = "/api/v1/projects/"
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	// A path that encodes a slash already knows the rule.
	if !ok || !strings.Contains(strings.Trim(rest, "/"), "/") || strings.Contains(strings.ToUpper(rest), "%2F") {
		return ""
	}
	project, suffix := strings.Trim(rest, "/"), ""
	for _, route := range []string{"/pipelines", "/merge_requests/"} {
		if i := strings.LastIndex(rest, route); i > 0 {
			project, suffix = rest[:i], rest[i:]
			break
		}
	}
	if !strings.Contains(project, "/") {
		return ""
	}
	return fmt.Sprintf("a project name's \"/\" is written %%2F in a path: %s%s%s",
		prefix, strings.ReplaceAll(project, "/", "%2F"), suffix)
}

// gitErrorCode is the contract's code of a git mount's answer, by its
// status.
func gitErrorCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusForbidden:
		return codeForbidden
	case http.StatusNotFound:
		return codeNotFound
	case http.StatusMethodNotAllowed:
		return codeMethodNotAllowed
	case http.StatusUnsupportedMediaType:
		return codeUnsupportedMedia
	case http.StatusServiceUnavailable:
		return codeUnavailable
	case http.StatusRequestTimeout:
		return codeRequestTimeout
	}
	if status >= 500 {
		return codeInternal
	}
	return codeInvalidRequest
}

// errorHandler writes every error as the contract's JSON body. Causes of 5xx
// answers are logged, never sent.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		he := toHTTPError(err)
		if he.Code == codeNotFound && he.Message == noRouteMessage {
			if hint := slashHint(c.Request().URL.EscapedPath()); hint != "" {
				he = &httpError{Status: he.Status, Code: he.Code, Message: noRouteMessage + "; " + hint}
			}
		}
		if he.Status >= 500 {
			logger.Error("request failed", "method", c.Request().Method, "route", c.Path(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "status", he.Status, "err", err)
		}
		if c.Response().Committed {
			return
		}
		h := c.Response().Header()
		switch he.Status {
		case http.StatusServiceUnavailable, http.StatusInsufficientStorage:
			h.Set("Retry-After", retryAfterSeconds)
		case http.StatusTooManyRequests:
			h.Set("Retry-After", "1")
		case http.StatusUnauthorized:
			if h.Get(echo.HeaderWWWAuthenticate) == "" {
				h.Set(echo.HeaderWWWAuthenticate, `Bearer realm="refkeeper"`)
			}
		}
		// A failed mirror's pin says when its clone may be tried again,
		// whatever the status of its failure.
		var later *mirrors.RetryLaterError
		if errors.As(err, &later) && later.Wait > 0 {
			h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(later.Wait.Seconds())), 10))
		}
		body := errorBody{Error: errorDetail{Code: he.Code, Message: he.Message}}
		if he.Conflicts != nil {
			body.Error.Conflicts, body.Error.ConflictsTotal = &he.Conflicts, &he.ConflictsTotal
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(he.Status)
			return
		}
		if werr := c.JSON(he.Status, body); werr != nil {
			logger.Warn("writing error response", "err", werr)
		}
	}
}
