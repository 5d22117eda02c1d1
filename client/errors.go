package client

import (
	"fmt"
	"strings"
	"time"
)

// Code is the stable error code of the contract's error body. Codes are
// errors themselves, so that errors.Is(err, CodePinNotFound) tells whether
// err is an *Error with that code.
type Code string

// The contract's error codes, plus the ones the server answers at the HTTP
// level.
const (
	CodeInvalidRequest      Code = "invalid_request"
	CodeUnauthorized        Code = "unauthorized"
	CodeForbidden           Code = "forbidden"
	CodeProjectNotFound     Code = "project_not_found"
	CodePinNotFound         Code = "pin_not_found"
	CodeRefConflict         Code = "ref_conflict"
	CodeCommitNotFound      Code = "commit_not_found"
	CodeMergeRefNotFound    Code = "merge_ref_not_found"
	CodePayloadTooLarge     Code = "payload_too_large"
	CodeUnsupportedMedia    Code = "unsupported_media_type"
	CodeUnavailable         Code = "unavailable"
	CodeRefNotFound         Code = "ref_not_found"
	CodeMergeConflict       Code = "merge_conflict"
	CodeProjectConflict     Code = "project_conflict"
	CodeUpstreamUnavailable Code = "upstream_unavailable"
	CodeUpstreamRejected    Code = "upstream_rejected"
	CodeRateLimited         Code = "rate_limited"
	CodeNotFound            Code = "not_found"
	CodeMethodNotAllowed    Code = "method_not_allowed"
	CodeInternal            Code = "internal"
)

func (c Code) Error() string { return string(c) }

// Error is an answer of the server that is not a success: the contract's
// error body, or for an answer without one (a proxy's error page) the status
// alone, with Code empty and Message a short excerpt of the body.
type Error struct {
	// Method and Path are the request's, for messages.
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Code is the error body's code; empty when the body had none.
	Code Code
	// Message is the error body's message.
	Message string
	// Conflicts are the conflicting paths of a merge_conflict; nil otherwise.
	Conflicts []string
	// RetryAfter is the server's Retry-After; zero when it sent none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	code := string(e.Code)
	if code == "" {
		code = "no error code"
	}
	msg := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, code, e.Message)
	if len(e.Conflicts) > 0 {
		msg += " (conflicts: " + strings.Join(e.Conflicts, ", ") + ")"
	}
	return msg
}

// Is makes errors.Is(err, CodeX) true for an *Error with code X.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c != "" && c == e.Code
}

// Temporary reports whether the server called the failure transient: sent
// again later, the same request may succeed.
func (e *Error) Temporary() bool {
	return e.Status == 503 || e.Status == 429
}

// ConnectionError is a request that got no answer: the connection could not
// be made or broke before the answer was read.
type ConnectionError struct {
	Method, Path string
	// Retryable is false for failures that a retry cannot mend (a host name
	// that does not exist, a TLS certificate that is not trusted).
	Retryable bool
	Err       error
}

func (e *ConnectionError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Method, e.Path, e.Err)
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// ExhaustedError is the last failure of a call that was retried until its
// attempts ran out. errors.As and errors.Is see through it to that failure.
type ExhaustedError struct {
	Attempts int
	Err      error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("gave up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *ExhaustedError) Unwrap() error { return e.Err }
