package githttp

import (
	"fmt"
	"net/http"
)

// Error is an answer the git mount gives in git's place: Status is the
// HTTP status, Message what the client reads. The mounting package writes
// it (api: as the contract's JSON error body).
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d: %s", e.Status, e.Message)
}

var (
	errNotFound = &Error{Status: http.StatusNotFound,
		Message: "not a git smart-HTTP path: use /git/<project>.git"}
	errDumbHTTP = &Error{Status: http.StatusForbidden,
		Message: "only git's smart HTTP protocol is served (service=git-upload-pack)"}
	errPush = &Error{Status: http.StatusForbidden,
		Message: "repositories are read-only: pushing is refused"}
	errAuth = &Error{Status: http.StatusUnauthorized,
		Message: "missing or wrong token: use an API token or the pin's fetch_token"}
	errForbidden = &Error{Status: http.StatusForbidden,
		Message: "this token's role or projects do not cover fetching this project"}
	errMethod = &Error{Status: http.StatusMethodNotAllowed,
		Message: "method not allowed on this route"}
	errMalformedPkt = &Error{Status: http.StatusBadRequest,
		Message: "malformed git request: not one upload-pack request in pkt-lines"}
	errBadAdvertisement = &Error{Status: http.StatusBadGateway,
		Message: "git http-backend answered an advertisement that could not be read"}
)

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}
