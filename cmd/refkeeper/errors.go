package main

import "fmt"

// fetchURLError: no base URL for fetch_url can be made from --listen, and
// --fetch-url is not set.
type fetchURLError struct {
	Listen string
	Err    error
}

func (e *fetchURLError) Error() string {
	return fmt.Sprintf("no fetch URL to advertise for --listen %q (%v): set --fetch-url (REFKEEPER_FETCH_URL) to the URL runners reach", e.Listen, e.Err)
}

func (e *fetchURLError) Unwrap() error { return e.Err }
