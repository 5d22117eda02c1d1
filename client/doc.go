// Package client is a Go client of refkeeper's HTTP API: pins (by SHA, by
// merge request, by computed merge), finish, delete, list with cursor
// pagination, merge request close, GC, mirrored projects, and the health
// probes. It is what a user's program imports, so it imports nothing of
// refkeeper's other packages: its wire types in types.go are its own and
// match the contract's JSON field for field (nullable fields are pointers).
//
// Every call takes a context; cancelling it ends the call, also while it
// waits to retry.
//
// Errors. An answer with the contract's error body becomes an *Error with
// the HTTP status, the stable code, the message, the conflicting paths of a
// merge_conflict and the server's Retry-After. Callers branch on the code
// with errors.Is against the Code constants:
//
//	_, err := c.GetPin(ctx, "group/app", 7)
//	if errors.Is(err, client.CodePinNotFound) { … }
//
// Retries. A call is retried when the server says the failure is transient
// (503 unavailable or upstream_unavailable, 429 rate_limited) and when the
// connection failed (refused, reset, closed early, timed out), with jittered
// exponential backoff; a Retry-After is honoured, capped at MaxDelay. Nothing
// else is retried: a 4xx, a 500, a 502 upstream_rejected, a DNS name that does
// not exist, a TLS failure or a cancelled context ends the call at once.
//
// Retrying PUT, POST and DELETE is safe here, not only GET: every request of
// this API that changes state is idempotent (the contract's invariant 4), so
// a request that reached the server before its connection broke, sent again,
// ends in the same state as sent once. A PUT of a pin that did get through
// answers 200 with the same pin the second time, a finish keeps its first
// finished_at, and a DELETE whose first attempt deleted the ref answers 404
// pin_not_found only if the record is gone too. The probes (Healthz, Readyz)
// are never retried: they ask about this moment.
//
// Options.OnRetry sees every retry before its pause (the failure, the attempt
// number, the delay), so a command line tool can print what it does.
package client
