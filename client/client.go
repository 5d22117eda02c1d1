package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 6
	DefaultBaseDelay   = 500 * time.Millisecond
	DefaultMaxDelay    = 30 * time.Second
	// maxAnswer bounds an answer read into memory: a page of 1,000 pins
	// is well under 1 MiB.
	maxAnswer = 16 << 20
	userAgent = "refkeeper-client"
)

// Options configure a Client. Zero values mean the defaults given per field.
type Options struct {
	// BaseURL is the service's address, e.g. http://127.0.0.1:8080. Required.
	BaseURL string
	// Token is the API bearer token; empty sends none (only the probes
	// work then).
	Token string
	// HTTPClient sends the requests; nil: a client of its own with no
	// overall timeout (the context bounds a call).
	HTTPClient *http.Client
	// MaxAttempts is how many times one call is sent at most, the first
	// included; 0: DefaultMaxAttempts; 1: no retries.
	MaxAttempts int
	// BaseDelay is the pause before the first retry; it doubles with each
	// further retry, each pause drawn at random from its upper half. 0:
	// DefaultBaseDelay.
	BaseDelay time.Duration
	// MaxDelay caps every pause, also one the server asks for with
	// Retry-After. 0: DefaultMaxDelay.
	MaxDelay time.Duration
	// OnRetry, if set, is called before each pause of a retry, on the
	// goroutine of the call.
	OnRetry func(RetryEvent)
}

// RetryEvent describes one retry about to happen.
type RetryEvent struct {
	Method, Path string
	// Attempt is the number of the attempt that failed, from 1.
	Attempt int
	// Delay is the pause before the next attempt.
	Delay time.Duration
	// Err is why: an *Error (503, 429) or a *ConnectionError.
	Err error
}

// Client calls one refkeeper service. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	retries retryPolicy
	onRetry func(RetryEvent)
}

// New checks the options and returns a client.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		return nil, errors.New("client: BaseURL is required")
	}
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("client: base URL %q is not http(s)://host[:port]", opts.BaseURL)
	}
	if base.User != nil {
		return nil, errors.New("client: base URL must not carry credentials; set Token")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	p := retryPolicy{attempts: opts.MaxAttempts, base: opts.BaseDelay, max: opts.MaxDelay}
	if p.attempts <= 0 {
		p.attempts = DefaultMaxAttempts
	}
	if p.base <= 0 {
		p.base = DefaultBaseDelay
	}
	if p.max <= 0 {
		p.max = DefaultMaxDelay
	}
	return &Client{base: base, token: opts.Token, http: hc, retries: p, onRetry: opts.OnRetry}, nil
}

// request is one call of the API.
type request struct {
	method string
	// path is already escaped (see projectPath).
	path  string
	query url.Values
	body  any
	// noRetry marks a probe: its answer is about this moment.
	noRetry bool
}

// do sends r, retrying transient failures, and decodes a 2xx answer into
// out (when out is not nil). It answers the final status code.
func (c *Client) do(ctx context.Context, r request, out any) (int, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return 0, fmt.Errorf("%s %s: encoding the body: %w", r.method, r.path, err)
		}
	}
	attempts := c.retries.attempts
	if r.noRetry {
		attempts = 1
	}
	for attempt := 1; ; attempt++ {
		status, raw, err := c.send(ctx, r, payload)
		if err == nil {
			if out != nil && len(raw) > 0 {
				if err := json.Unmarshal(raw, out); err != nil {
					return status, fmt.Errorf("%s %s: decoding the %d answer: %w", r.method, r.path, status, err)
				}
			}
			return status, nil
		}
		delay, retry := c.retries.next(attempt, err)
		if !retry || ctx.Err() != nil {
			return status, err
		}
		if attempt >= attempts {
			return status, &ExhaustedError{Attempts: attempt, Err: err}
		}
		if c.onRetry != nil {
			c.onRetry(RetryEvent{Method: r.method, Path: r.path, Attempt: attempt, Delay: delay, Err: err})
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return status, fmt.Errorf("%s %s: waiting to retry: %w (after %w)", r.method, r.path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// send makes one attempt. A non-2xx answer is an *Error; no answer is a
// *ConnectionError (or the context's error).
func (c *Client) send(ctx context.Context, r request, payload []byte) (int, []byte, error) {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + r.path
	var err error
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", r.method, r.path, ctx.Err())
		}
		return 0, nil, &ConnectionError{Method: r.method, Path: r.path, Retryable: retryableConnError(err), Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		if ctx.Err() != nil {
			return resp.StatusCode, nil, fmt.Errorf("%s %s: %w", r.method, r.path, ctx.Err())
		}
		// The answer broke off: the request may have been applied, which
		// is why only idempotent requests exist to be retried.
		return resp.StatusCode, nil, &ConnectionError{Method: r.method, Path: r.path, Retryable: true,
			Err: fmt.Errorf("reading the %d answer: %w", resp.StatusCode, err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, raw, nil
	}
	return resp.StatusCode, nil, decodeError(r, resp, raw)
}

// decodeError turns a non-2xx answer into an *Error.
func decodeError(r request, resp *http.Response, raw []byte) *Error {
	e := &Error{Method: r.method, Path: r.path, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var b errorBody
	if json.Unmarshal(raw, &b) == nil && b.Error != nil && b.Error.Code != "" {
		e.Code, e.Message, e.Conflicts = Code(b.Error.Code), b.Error.Message, b.Error.Conflicts
		return e
	}
	msg := strings.TrimSpace(string(raw))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; zero when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// retryableConnError tells a connection failure a retry may mend (refused,
// reset, closed early, timed out, a DNS server that did not answer) from one
// it cannot (no such host, an untrusted certificate, a malformed URL).
func retryableConnError(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostnameErr      x509.HostnameError
		certInvalid      x509.CertificateInvalidError
		tlsRecord        tls.RecordHeaderError
		verifyErr        *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostnameErr) || errors.As(err, &certInvalid) ||
		errors.As(err, &tlsRecord) || errors.As(err, &verifyErr) {
		return false
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Op == "parse" {
		return false
	}
	return true
}

// retryPolicy decides whether and when a failed attempt is sent again.
type retryPolicy struct {
	attempts  int
	base, max time.Duration
}

// next answers the pause before the attempt after attempt, and whether
// there is to be one at all.
func (p retryPolicy) next(attempt int, err error) (time.Duration, bool) {
	var (
		apiErr  *Error
		connErr *ConnectionError
	)
	var floor time.Duration
	switch {
	case errors.As(err, &apiErr):
		if !apiErr.Temporary() {
			return 0, false
		}
		floor = apiErr.RetryAfter
	case errors.As(err, &connErr):
		if !connErr.Retryable {
			return 0, false
		}
	default:
		return 0, false
	}
	d := p.base << min(attempt-1, 30)
	if d <= 0 || d > p.max {
		d = p.max
	}
	// Full jitter over the upper half: callers that failed together do
	// not come back together.
	d = d/2 + rand.N(d/2+1)
	d = max(d, floor)
	return min(d, p.max), true
}
