package idtoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/refs"
)

// Defaults of the Verifier's fields.
const (
	// DefaultTimeout bounds each fetch from an issuer.
	DefaultTimeout = 10 * time.Second
	// DefaultRetryDiscovery is how long a failed discovery stands before a
	// token of that issuer tries it again.
	DefaultRetryDiscovery = 5 * time.Second
	// DefaultRenew is how long a discovery and its key set are used before
	// they are fetched again (in the background: the last good ones serve
	// meanwhile, and stay when the renewal fails).
	DefaultRenew = time.Hour
)

const (
	// Leeway is the clock skew allowed on exp, nbf and iat (the contract's
	// 60 s).
	Leeway = 60 * time.Second
	// maxTokenBytes: a longer bearer token is not read as a JWT at all.
	maxTokenBytes = 16 << 10
	// MaxLifetime bounds a token's exp-iat and exp-now: a token that
	// would stay good longer (a leaked one, replayed for a year) is
	// refused. GitHub's tokens live minutes; GitLab's live for the job's
	// timeout (5 minutes when it has none), which GitLab lets be longer
	// than the hour it is by default: a day covers any job that runs in
	// one, and a job with a timeout over a day cannot use its ID token.
	MaxLifetime = 24 * time.Hour
)

// signingAlgs are the algorithms a token may be signed with, whatever
// the issuer publishes: asymmetric ones only, so that neither "none" nor
// an HMAC keyed with a public key (alg confusion) can pass.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// ErrNotIDToken is a bearer token that is no ID token of a trusted issuer:
// not a JWT signed with an accepted algorithm, or one whose iss no
// identities entry names. Its text is the one every unknown token gets.
var ErrNotIDToken = errors.New("missing or wrong token")

// RefusedError is an ID token of a trusted issuer that is not accepted.
// Reason says why, in words that hold no part of the token, for the log:
// the caller is answered as for any unknown token.
type RefusedError struct {
	Issuer string
	Reason string
}

func (e *RefusedError) Error() string { return "ID token refused: " + e.Reason }

// Verifier verifies CI jobs' ID tokens against the identities entries in
// force. Its zero value with Identities set is ready; it is safe for
// concurrent use and keeps what it learns of each issuer.
type Verifier struct {
	// Identities lists the trusted issuers in force, asked per token
	// (the access file's, read again when it changes). Required.
	Identities func() []access.Identity
	// Timeout bounds each fetch from an issuer. Zero: DefaultTimeout.
	Timeout time.Duration
	// RetryDiscovery is how long a failed discovery stands. Zero:
	// DefaultRetryDiscovery.
	RetryDiscovery time.Duration
	// Renew is how long a discovery and its key set are used: a key the
	// issuer took out of its set verifies no longer than that. Zero:
	// DefaultRenew.
	Renew time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	issuers map[string]*issuer
}

// jobClaims are the claims read from a verified token: the registered
// time claims (go-jose checks them with leeway) and those of both kinds.
type jobClaims struct {
	jwt.Claims
	ProjectPath string  `json:"project_path"` // gitlab
	PipelineID  claimID `json:"pipeline_id"`  // gitlab
	Repository  string  `json:"repository"`   // github, gitea, forgejo
	RunID       claimID `json:"run_id"`       // github, gitea, forgejo
}

// claimID is a pipeline id claim: GitLab and GitHub send a JSON string of
// decimal digits; a JSON number is taken too. Anything else reads as
// absent (0).
type claimID int64

func (c *claimID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if unq, err := unquote(b); err == nil {
		s = unq
	}
	id, err := refs.ParsePipelineID(s)
	if err != nil {
		*c = 0
		return nil
	}
	*c = claimID(id)
	return nil
}

func unquote(b []byte) (string, error) {
	var s string
	err := json.Unmarshal(b, &s)
	return s, err
}

// Verify answers the grant of a CI job's ID token: access.Job, its
// project and pipeline, and the projects of the entries that accepted it.
// The error is ErrNotIDToken (no ID token of a trusted issuer: 401 as any
// unknown token), *RefusedError (a trusted issuer's token that does not
// hold: 401), or *refs.UnavailableError (the issuer's discovery or keys
// could not be fetched: 503, retry).
func (v *Verifier) Verify(ctx context.Context, raw string) (access.Grant, error) {
	if v == nil || v.Identities == nil || raw == "" || len(raw) > maxTokenBytes {
		return access.Grant{}, ErrNotIDToken
	}
	// Read iss before anything is verified, only to choose the entries:
	// an issuer no entry names is never contacted.
	tok, err := jwt.ParseSigned(raw, signingAlgs)
	if err != nil {
		return access.Grant{}, ErrNotIDToken
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return access.Grant{}, ErrNotIDToken
	}
	identities := v.Identities()
	var entries []access.Identity
	for _, id := range identities {
		if id.Issuer == unverified.Issuer {
			entries = append(entries, id)
		}
	}
	if len(entries) == 0 {
		return access.Grant{}, ErrNotIDToken
	}
	iss := v.issuer(unverified.Issuer, identities)
	g, err := v.verify(ctx, iss, entries, raw)
	// The reason is the log's alone: the caller is told as little as of
	// any unknown token, and a 503 does not name the issuer.
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		v.logger().Info("ID token refused", "issuer", refused.Issuer, "reason", refused.Reason)
	case refs.IsUnavailable(err):
		v.logger().Warn("ID token not verified: its issuer could not be asked", "issuer", iss.url, "err", err)
	}
	return g, err
}

func (v *Verifier) verify(ctx context.Context, iss *issuer, entries []access.Identity, raw string) (access.Grant, error) {
	refuse := func(format string, args ...any) (access.Grant, error) {
		return access.Grant{}, &RefusedError{Issuer: iss.url, Reason: fmt.Sprintf(format, args...)}
	}
	verifier, err := iss.verifier(ctx)
	if err != nil {
		return access.Grant{}, err
	}
	// go-oidc checks the signature with the issuer's keys (fetched again
	// for an unknown key id) and iss; aud and the times are checked
	// below, per entry and with the contract's leeway.
	note := &fetchNote{}
	idt, err := verifier.Verify(context.WithValue(ctx, fetchNoteKey{}, note), raw)
	if err != nil {
		if note.err != nil {
			return access.Grant{}, &refs.UnavailableError{Op: opKeys, Cause: note.err}
		}
		if ctx.Err() != nil {
			return access.Grant{}, &refs.UnavailableError{Op: "verifying an ID token", Cause: ctx.Err()}
		}
		return refuse("its signature does not verify with the issuer's published keys")
	}
	var c jobClaims
	if err := idt.Claims(&c); err != nil {
		return refuse("its claims are not a JSON object of the expected types")
	}
	if c.Expiry == nil {
		return refuse("it has no exp")
	}
	if c.IssuedAt == nil {
		return refuse("it has no iat")
	}
	if exp := c.Expiry.Time(); exp.Sub(c.IssuedAt.Time()) > MaxLifetime || time.Until(exp) > MaxLifetime+Leeway {
		return refuse("it is valid for longer than %s (iat %s, exp %s)", MaxLifetime,
			c.IssuedAt.Time().UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339))
	}
	switch err := c.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, Leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return refuse("it expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return refuse("it is not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return refuse("it was issued in the future (%s)", c.IssuedAt.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return refuse("its exp, nbf or iat do not hold")
	}
	var (
		audiences []string
		accepted  []access.Identity
		project   refs.Project
		pipeline  refs.PipelineID
		missing   []string
	)
	for _, e := range entries {
		if !slices.Contains(audiences, e.Audience) {
			audiences = append(audiences, e.Audience)
		}
		if !slices.Contains(idt.Audience, e.Audience) {
			continue
		}
		name, id, claims := c.ProjectPath, c.PipelineID, "project_path and pipeline_id"
		if e.Kind == "github" {
			name, id, claims = c.Repository, c.RunID, "repository and run_id"
		}
		if name == "" || id == 0 {
			missing = append(missing, claims)
			continue
		}
		p, err := refs.ParseProject(name)
		if err != nil {
			return refuse("its project claim is not a project name")
		}
		if len(accepted) > 0 && (p != project || refs.PipelineID(id) != pipeline) {
			return refuse("the identities entries of its issuer read it as different pipelines")
		}
		project, pipeline = p, refs.PipelineID(id)
		accepted = append(accepted, e)
	}
	switch {
	case len(accepted) > 0:
	case len(missing) > 0:
		return refuse("it lacks the claims %s", strings.Join(missing, ", or "))
	default:
		return refuse("its aud holds none of %q", audiences)
	}
	var patterns []refs.ProjectPattern
	for _, e := range accepted {
		patterns = append(patterns, e.Projects...)
	}
	if !refs.MatchAny(patterns, project) {
		// The contract: the project must match the entry's projects, any
		// other token is 401 (on a public issuer, any stranger's project
		// holds a valid token).
		return refuse("its project %s is outside its identities entries' projects", project)
	}
	return access.Grant{
		Name:     fmt.Sprintf("ID token of %s pipeline %d", project, pipeline),
		Role:     access.Job,
		Projects: patterns,
		Project:  project,
		Pipeline: pipeline,
	}, nil
}

// issuer answers the cached state of an issuer, made on first use; the
// states of issuers no entry names any more are dropped then.
func (v *Verifier) issuer(url string, identities []access.Identity) *issuer {
	v.mu.Lock()
	defer v.mu.Unlock()
	if iss, ok := v.issuers[url]; ok {
		return iss
	}
	if v.issuers == nil {
		v.issuers = map[string]*issuer{}
	}
	for known := range v.issuers {
		if !slices.ContainsFunc(identities, func(id access.Identity) bool { return id.Issuer == known }) {
			delete(v.issuers, known)
		}
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	retry := v.RetryDiscovery
	if retry <= 0 {
		retry = DefaultRetryDiscovery
	}
	renew := v.Renew
	if renew <= 0 {
		renew = DefaultRenew
	}
	iss := newIssuer(url, timeout, retry, renew, v.logger())
	v.issuers[url] = iss
	return iss
}

func (v *Verifier) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}
