package testdata

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Paths an Issuer serves below its URL.
const (
	// IssuerKeysPath is its jwks_uri's path (GitHub's).
	IssuerKeysPath = "/.well-known/jwks"
	// IssuerActionsPath is its Actions ID token request endpoint
	// (ACTIONS_ID_TOKEN_REQUEST_URL's path, as a GitHub runner has it).
	IssuerActionsPath = "/_apis/idtoken"
	// IssuerActionsRequestToken is the bearer token (the job's
	// ACTIONS_ID_TOKEN_REQUEST_TOKEN) the request endpoint wants.
	IssuerActionsRequestToken = "actions-request-token-5b1c2e"
	// IssuerAudience is the audience refkeeper's docs configure and
	// `refkeeper checkout` asks for.
	IssuerAudience = "refkeeper"
)

// IssuerKey is a signing key of an Issuer's, published or not.
type IssuerKey struct {
	ID      string
	Private *rsa.PrivateKey
}

// Issuer is an OpenID Connect issuer of CI jobs' ID tokens, for tests: a
// real HTTP server on a free loopback port serving
// /.well-known/openid-configuration and its key set (IssuerKeysPath), with
// RSA keys generated at test time. It mints tokens with the claims a test
// chooses (Token; GitLabClaims and GitHubClaims are shaped as those hosts'
// tokens are), rotates keys (Rotate, then Retire), signs with keys it
// never published (NewKey, TokenWithKey) and forges the tokens of the
// known attacks on JWT verifiers (NoneToken, HMACToken). It also answers
// as GitHub's Actions runtime does (ActionsRequestURL: a GitHub-shaped
// token for SetActionsJob's job, with the audience asked for). It counts
// the fetches of its documents and can be made to answer 503 (SetDown).
type Issuer struct {
	// URL is the issuer (the tokens' iss): http://127.0.0.1:<port>.
	URL string

	srv *httptest.Server

	mu          sync.Mutex
	published   []*IssuerKey // the key set; published[0] signs
	down        bool
	discoveries int
	keyFetches  int
	actionsRepo string
	actionsRun  int64
}

// StartIssuer starts an Issuer with one published key; it is stopped when
// the test ends.
func StartIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	iss := &Issuer{}
	iss.srv = httptest.NewServer(http.HandlerFunc(iss.serve))
	tb.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	iss.published = []*IssuerKey{iss.NewKey(tb)}
	return iss
}

func (iss *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	iss.mu.Lock()
	down := iss.down
	iss.mu.Unlock()
	if down {
		http.Error(w, "issuer down", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		iss.mu.Lock()
		iss.discoveries++
		iss.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + IssuerKeysPath,
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "nbf", "jti"},
			"scopes_supported":                      []string{"openid"},
		})
	case IssuerKeysPath:
		iss.mu.Lock()
		iss.keyFetches++
		var set jose.JSONWebKeySet
		for _, k := range iss.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.ID, Algorithm: "RS256", Use: "sig"})
		}
		iss.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	case IssuerActionsPath:
		iss.serveActions(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveActions answers as the Actions runtime's ID token endpoint: the
// request token as bearer, the audience as a query parameter, the token as
// {"value": …}.
func (iss *Issuer) serveActions(w http.ResponseWriter, r *http.Request) {
	want := "Bearer " + IssuerActionsRequestToken
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		http.Error(w, `{"message":"bad request token"}`, http.StatusUnauthorized)
		return
	}
	iss.mu.Lock()
	repo, run, key := iss.actionsRepo, iss.actionsRun, iss.published[0]
	iss.mu.Unlock()
	if repo == "" {
		http.Error(w, `{"message":"no job: call SetActionsJob"}`, http.StatusNotFound)
		return
	}
	aud := r.URL.Query().Get("audience")
	if aud == "" {
		aud = "https://github.com/" + repo // the runtime's default
	}
	tok, err := signRS256(key, iss.withTimes(GitHubClaims(repo, run, aud)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"count": 1, "value": tok})
}

// ActionsRequestURL is ACTIONS_ID_TOKEN_REQUEST_URL as a GitHub runner
// sets it; the request token is IssuerActionsRequestToken.
func (iss *Issuer) ActionsRequestURL() string {
	return iss.URL + IssuerActionsPath + "?api-version=2.0"
}

// SetActionsJob names the job whose token ActionsRequestURL answers.
func (iss *Issuer) SetActionsJob(repository string, runID int64) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.actionsRepo, iss.actionsRun = repository, runID
}

// SetDown makes every request answered 503 (true) or served again.
func (iss *Issuer) SetDown(down bool) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.down = down
}

// Discoveries counts the discovery documents served.
func (iss *Issuer) Discoveries() int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.discoveries
}

// KeyFetches counts the key sets served.
func (iss *Issuer) KeyFetches() int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.keyFetches
}

// NewKey generates a key with a fresh key id; it is not published.
func (iss *Issuer) NewKey(tb testing.TB) *IssuerKey {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("testdata: generating an RSA key: %v", err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &IssuerKey{ID: fmt.Sprintf("%x", id), Private: priv}
}

// Rotate publishes a new key and signs with it from now on; the keys
// published before stay in the key set until Retire.
func (iss *Issuer) Rotate(tb testing.TB) *IssuerKey {
	tb.Helper()
	k := iss.NewKey(tb)
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.published = append([]*IssuerKey{k}, iss.published...)
	return k
}

// Retire takes every key but the signing one out of the key set.
func (iss *Issuer) Retire() {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.published = iss.published[:1]
}

// SigningKey is the key Token signs with.
func (iss *Issuer) SigningKey() *IssuerKey {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.published[0]
}

// GitLabClaims are the claims of a GitLab CI job's id_tokens token (GitLab
// 16 and later) of pipeline pipelineID in project projectPath, for aud.
// Pipeline and project ids are strings, as GitLab sends them.
func GitLabClaims(projectPath string, pipelineID int64, aud string) map[string]any {
	return map[string]any{
		"aud":                aud,
		"sub":                "project_path:" + projectPath + ":ref_type:branch:ref:main",
		"namespace_id":       "72",
		"namespace_path":     namespaceOf(projectPath),
		"project_id":         "1024",
		"project_path":       projectPath,
		"user_id":            "42",
		"user_login":         "dev",
		"user_email":         "dev@example.com",
		"user_access_level":  "developer",
		"pipeline_id":        strconv.FormatInt(pipelineID, 10),
		"pipeline_source":    "merge_request_event",
		"job_id":             strconv.FormatInt(pipelineID*10+1, 10),
		"ref":                "main",
		"ref_type":           "branch",
		"ref_path":           "refs/heads/main",
		"ref_protected":      "true",
		"runner_id":          7,
		"runner_environment": "self-hosted",
		"sha":                "1f3e4c0a4a54d0bd2f3e1bcf6d1a1e1f8c1c0de0",
		"project_visibility": "private",
		"ci_config_ref_uri":  "gitlab.example.com/" + projectPath + "//.gitlab-ci.yml@refs/heads/main",
		"ci_config_sha":      "1f3e4c0a4a54d0bd2f3e1bcf6d1a1e1f8c1c0de0",
		"jti":                fmt.Sprintf("gl-%d", pipelineID),
	}
}

// GitHubClaims are the claims of a GitHub Actions job's ID token (also
// Gitea's and Forgejo's Actions) of run runID in repository, for aud. The
// run id is a string, as GitHub sends it.
func GitHubClaims(repository string, runID int64, aud string) map[string]any {
	return map[string]any{
		"aud":                   aud,
		"sub":                   "repo:" + repository + ":pull_request",
		"ref":                   "refs/pull/1/merge",
		"sha":                   "1f3e4c0a4a54d0bd2f3e1bcf6d1a1e1f8c1c0de0",
		"repository":            repository,
		"repository_owner":      namespaceOf(repository),
		"repository_owner_id":   "72",
		"repository_id":         "1024",
		"repository_visibility": "private",
		"run_id":                strconv.FormatInt(runID, 10),
		"run_number":            "3",
		"run_attempt":           "1",
		"actor":                 "dev",
		"actor_id":              "42",
		"workflow":              "ci",
		"head_ref":              "feature",
		"base_ref":              "main",
		"event_name":            "pull_request",
		"ref_type":              "branch",
		"job_workflow_ref":      repository + "/.github/workflows/ci.yml@refs/pull/1/merge",
		"runner_environment":    "self-hosted",
		"jti":                   fmt.Sprintf("gh-%d", runID),
	}
}

func namespaceOf(project string) string {
	for i := len(project) - 1; i >= 0; i-- {
		if project[i] == '/' {
			return project[:i]
		}
	}
	return project
}

// withTimes is claims with iss (the issuer's URL), iat and nbf (now) and
// exp (in five minutes) added where claims does not have them. A claim
// whose value is nil is left out altogether.
func (iss *Issuer) withTimes(claims map[string]any) map[string]any {
	out := maps.Clone(claims)
	now := time.Now().Unix()
	for k, v := range map[string]any{"iss": iss.URL, "iat": now, "nbf": now, "exp": now + 300} {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

// Token signs claims (RS256, with the signing key's id), adding iss, iat,
// nbf and exp where claims has none (a nil value leaves one out; a
// time.Time is written as seconds).
func (iss *Issuer) Token(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return iss.TokenWithKey(tb, iss.SigningKey(), claims)
}

// TokenWithKey signs claims as Token does, with key (published or not).
func (iss *Issuer) TokenWithKey(tb testing.TB, key *IssuerKey, claims map[string]any) string {
	tb.Helper()
	tok, err := signRS256(key, iss.withTimes(claims))
	if err != nil {
		tb.Fatalf("testdata: signing a token: %v", err)
	}
	return tok
}

func signRS256(key *IssuerKey, claims map[string]any) (string, error) {
	for k, v := range claims {
		if t, ok := v.(time.Time); ok {
			claims[k] = t.Unix()
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.Private, KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// NoneToken forges an unsigned token (alg "none", no signature) of claims
// with the signing key's id.
func (iss *Issuer) NoneToken(claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": iss.SigningKey().ID})
	payload, _ := json.Marshal(iss.withTimes(claims))
	enc := base64.RawURLEncoding
	return enc.EncodeToString(header) + "." + enc.EncodeToString(payload) + "."
}

// HMACToken forges the alg confusion attack: claims signed with HS256
// keyed with the signing key's public key (its DER bytes, public to
// anyone), under that key's id, which a verifier that took the algorithm
// from the token would accept.
func (iss *Issuer) HMACToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	k := iss.SigningKey()
	der, err := x509.MarshalPKIXPublicKey(&k.Private.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: der},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	if err != nil {
		tb.Fatalf("testdata: HS256 signer: %v", err)
	}
	tok, err := jwt.Signed(signer).Claims(iss.withTimes(claims)).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
