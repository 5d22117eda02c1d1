package hooks

import "fmt"

// UnauthorizedError is a delivery whose signature or token is missing or
// wrong. Nothing was read from its body.
type UnauthorizedError struct {
	Host   Host
	Reason string
}

func (e *UnauthorizedError) Error() string {
	return fmt.Sprintf("%s webhook: %s", e.Host, e.Reason)
}

// MalformedError is a verified delivery whose body is not the JSON its host
// sends. Nothing changed.
type MalformedError struct {
	Host Host
	Err  error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("%s webhook: malformed JSON body: %v", e.Host, e.Err)
}

func (e *MalformedError) Unwrap() error { return e.Err }
