package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// idTokenAudience is the audience of the ID tokens refkeeper accepts, the
// one checkout asks the Actions runtime for.
const idTokenAudience = "refkeeper"

// The variables GitHub Actions (and Gitea's and Forgejo's, which copy it)
// set in a job whose workflow has `permissions: id-token: write`.
const (
	envActionsRequestURL   = "ACTIONS_ID_TOKEN_REQUEST_URL"
	envActionsRequestToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// lookupToken is the bearer token of checkout's pin lookup, the first of:
// --token-file or REFKEEPER_TOKEN (an API token the job was given on
// purpose), REFKEEPER_ID_TOKEN (the job's ID token, GitLab's id_tokens),
// and an ID token requested from the Actions runtime. One source is used,
// never a second after the first was refused: a refusal is the answer.
func (c *cli) lookupToken(ctx context.Context, af *apiFlags) (string, error) {
	if af.tokenFile != "" || strings.TrimSpace(c.getenv("REFKEEPER_TOKEN")) != "" {
		return c.token(af)
	}
	if t := strings.TrimSpace(c.getenv("REFKEEPER_ID_TOKEN")); t != "" {
		return t, nil
	}
	reqURL, reqToken := c.getenv(envActionsRequestURL), c.getenv(envActionsRequestToken)
	if reqURL != "" && reqToken != "" {
		return c.requestActionsIDToken(ctx, af, reqURL, reqToken)
	}
	return "", usagef("no token to look the pin up with: set REFKEEPER_TOKEN or --token-file, or REFKEEPER_ID_TOKEN, or give the workflow `permissions: id-token: write` (%s)", envActionsRequestURL)
}

// idTokenRequestError is a request for an ID token that the Actions
// runtime did not answer with one.
type idTokenRequestError struct {
	status int   // the HTTP status, 0 when there was no answer
	err    error // what went wrong otherwise
}

func (e *idTokenRequestError) Error() string {
	if e.err != nil {
		return "requesting the job's ID token: " + e.err.Error()
	}
	return fmt.Sprintf("requesting the job's ID token: the Actions runtime answered %d %s", e.status, http.StatusText(e.status))
}

func (e *idTokenRequestError) Unwrap() error { return e.err }

// transient says whether asking again may help: no answer, 5xx, 429.
func (e *idTokenRequestError) transient() bool {
	return e.status == 0 && e.err != nil && !errors.Is(e.err, errBadIDTokenAnswer) ||
		e.status >= 500 || e.status == http.StatusTooManyRequests
}

var errBadIDTokenAnswer = errors.New("the answer holds no token")

// requestActionsIDToken asks the Actions runtime for the job's ID token
// with audience refkeeper, as @actions/core's getIDToken does: GET the
// request URL with &audience=, the request token as bearer, and the
// answer's JSON "value". Failures without an answer, 5xx and 429 are
// retried as the API commands retry theirs; nothing of the tokens is
// printed.
func (c *cli) requestActionsIDToken(ctx context.Context, af *apiFlags, reqURL, reqToken string) (string, error) {
	u, err := url.Parse(reqURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("%s is not an http(s) URL", envActionsRequestURL)
	}
	q := u.Query()
	q.Set("audience", idTokenAudience)
	u.RawQuery = q.Encode()
	hc := &http.Client{Timeout: 30 * time.Second}
	for attempt := 1; ; attempt++ {
		token, err := fetchIDToken(ctx, hc, u.String(), reqToken)
		var ie *idTokenRequestError
		if err == nil || !errors.As(err, &ie) || !ie.transient() || attempt >= af.attempts {
			return token, err
		}
		pause := backoff(af.retryDelay, af.maxDelay, attempt)
		c.stderrf("%s: %v (attempt %d of %d); retrying in %v\n", c.name, err, attempt, af.attempts, pause.Round(time.Millisecond))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

func fetchIDToken(ctx context.Context, hc *http.Client, u, reqToken string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", &idTokenRequestError{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+reqToken)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		// The URL (no secret in it) says which runtime failed; the
		// error's own text repeats it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", &idTokenRequestError{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return "", &idTokenRequestError{status: resp.StatusCode}
	}
	var answer struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil || strings.TrimSpace(answer.Value) == "" {
		return "", &idTokenRequestError{err: errBadIDTokenAnswer}
	}
	return strings.TrimSpace(answer.Value), nil
}
