package client

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		" 0 ":                           0,
		"-3":                            0,
		"soon":                          0,
		"Sun, 22 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Sun, 22 Nov 2026 09:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := retryPolicy{attempts: 10, base: 100 * time.Millisecond, max: 2 * time.Second}
	for _, tc := range []struct {
		name     string
		err      error
		attempt  int
		retry    bool
		min, max time.Duration
	}{
		{"503 backs off, jittered in the upper half", &Error{Status: 503, Code: CodeUnavailable}, 1, true, 50 * time.Millisecond, 100 * time.Millisecond},
		{"doubling", &Error{Status: 503}, 3, true, 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", &Error{Status: 503}, 20, true, time.Second, 2 * time.Second},
		{"Retry-After is a floor", &Error{Status: 429, RetryAfter: time.Second}, 1, true, time.Second, time.Second},
		{"Retry-After is capped", &Error{Status: 503, RetryAfter: time.Minute}, 1, true, 2 * time.Second, 2 * time.Second},
		{"refused connection", &ConnectionError{Retryable: true, Err: errors.New("connection refused")}, 1, true, 50 * time.Millisecond, 100 * time.Millisecond},
		{"no such host", &ConnectionError{Retryable: retryableConnError(&net.DNSError{IsNotFound: true})}, 1, false, 0, 0},
		{"409", &Error{Status: 409, Code: CodeRefConflict}, 1, false, 0, 0},
		{"500", &Error{Status: 500, Code: CodeInternal}, 1, false, 0, 0},
		{"502", &Error{Status: 502, Code: CodeUpstreamRejected}, 1, false, 0, 0},
		{"other errors", errors.New("encoding"), 1, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				d, retry := p.next(tc.attempt, tc.err)
				if retry != tc.retry || d < tc.min || d > tc.max {
					t.Fatalf("next(%d, %v) = %v %v, want %v in [%v, %v]", tc.attempt, tc.err, d, retry, tc.retry, tc.min, tc.max)
				}
			}
		})
	}
}
