package idtoken

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"

	"github.com/refkeeper/refkeeper/refs"
)

const (
	// maxFetchBytes bounds an issuer's discovery document and key set;
	// real ones are a few KiB.
	maxFetchBytes = 1 << 20
	// The key set is fetched with each discovery, and again for a token
	// whose key id is not in it: at most keyFetchBurst at once, then one
	// per keyFetchEvery, per issuer. A failed fetch stands for
	// keyFetchEvery too: meanwhile tokens of unknown key ids are answered
	// from it (503) and the issuer is not asked. Tokens of a key id in the
	// cached set never fetch, whether their signature verifies or not.
	keyFetchEvery = 10 * time.Second
	keyFetchBurst = 3
)

// issuer is what is known of one trusted issuer: its verifier (discovery
// document, key set) once fetched, or the last failure.
type issuer struct {
	url    string
	retry  time.Duration
	renew  time.Duration
	logger *slog.Logger
	// discovery and keys fetch its documents.
	discovery, keys *http.Client
	// gate spaces out its key set fetches, across discoveries.
	gate *keyGate

	mu           sync.Mutex
	current      *discovered
	discoveredAt time.Time
	failure      error
	failedAt     time.Time
	running      chan struct{} // closed when the discovery under way ends
}

// discovered is one good discovery: the verifier over its cached key set.
type discovered struct {
	verifier *oidc.IDTokenVerifier
}

func newIssuer(issuerURL string, timeout, retry, renew time.Duration, logger *slog.Logger) *issuer {
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	client := func() *http.Client {
		return &http.Client{
			Timeout:   timeout,
			Transport: &boundedTransport{base: base},
			// The documents are the issuer's own, where it says: a redirect
			// is an error, never followed somewhere else.
			CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				return &fetchError{url: req.URL.Redacted(), reason: "answered with a redirect, which is not followed"}
			},
		}
	}
	return &issuer{
		url:       issuerURL,
		retry:     retry,
		renew:     renew,
		logger:    logger,
		discovery: client(),
		keys:      client(),
		gate:      &keyGate{limit: rate.NewLimiter(rate.Every(keyFetchEvery), keyFetchBurst), sem: make(chan struct{}, 1)},
	}
}

// verifier answers the issuer's verifier: the current one (renewed in the
// background once old), or, when there is none yet, the outcome of a
// discovery (one at a time; a failure stands for retry, so a down issuer
// costs one fetch per retry period, not one per token).
func (i *issuer) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	for {
		i.mu.Lock()
		now := time.Now()
		cur := i.current
		if cur != nil && now.Sub(i.discoveredAt) < i.renew {
			i.mu.Unlock()
			return cur.verifier, nil
		}
		failedRecently := i.failure != nil && now.Sub(i.failedAt) < i.retry
		if i.running == nil && !failedRecently {
			i.running = make(chan struct{})
			go i.discover()
		}
		running, failure := i.running, i.failure
		i.mu.Unlock()
		if cur != nil {
			return cur.verifier, nil // old, but good until a renewal succeeds
		}
		if running == nil {
			return nil, &refs.UnavailableError{Op: opDiscovery, Cause: failure}
		}
		select {
		case <-running:
		case <-ctx.Done():
			return nil, &refs.UnavailableError{Op: opDiscovery, Cause: ctx.Err()}
		}
	}
}

// discover fetches the discovery document (bounded by the clients'
// timeout, whoever asked) and records the outcome.
func (i *issuer) discover() {
	d, err := i.fetchDiscovery()
	i.mu.Lock()
	defer i.mu.Unlock()
	close(i.running)
	i.running = nil
	if err != nil {
		i.failure, i.failedAt = err, time.Now()
		i.logger.Error("ID token issuer unreachable: its tokens are answered 503 until it answers", "issuer", i.url, "err", err)
		return
	}
	i.current, i.discoveredAt, i.failure = d, time.Now(), nil
}

func (i *issuer) fetchDiscovery() (*discovered, error) {
	ctx := oidc.ClientContext(context.Background(), i.discovery)
	p, err := oidc.NewProvider(ctx, i.url)
	if err != nil {
		return nil, err
	}
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	if err := allowedKeysURL(i.url, meta.JWKSURL); err != nil {
		return nil, err
	}
	var algs []string
	for _, a := range meta.Algs {
		if slices.ContainsFunc(signingAlgs, func(s jose.SignatureAlgorithm) bool { return string(s) == a }) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		// Discovery must list them; where it does not, RS256 is the one
		// every issuer supports.
		algs = []string{oidc.RS256}
	}
	// A new key set each time, fetched now: keys the issuer took out of
	// its set (a key it no longer trusts) stop verifying at the latest
	// now, and a renewal that cannot fetch them keeps the last good ones.
	keys := &keySet{url: i.url, keysURL: meta.JWKSURL, client: i.keys, gate: i.gate, logger: i.logger}
	if err := keys.fetch(context.Background()); err != nil {
		return nil, err
	}
	v := oidc.NewVerifier(i.url, keys, &oidc.Config{
		// aud is checked per identities entry, exp, nbf and iat with the
		// contract's leeway, both by the caller.
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SupportedSigningAlgs: algs,
	})
	return &discovered{verifier: v}, nil
}

// allowedKeysURL holds the jwks_uri to the issuer's own rule: on the
// issuer's own host and port (every CI issuer serves its keys there), and
// https, or http when the issuer itself is http on a loopback address (a
// test issuer on this machine). So a discovery document cannot send the
// service to another host, or to another port of this one.
func allowedKeysURL(issuerURL, keysURL string) error {
	u, err := url.Parse(keysURL)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("discovery document: jwks_uri %q is not an https URL", keysURL)
	}
	iu, err := url.Parse(issuerURL)
	if err != nil {
		return fmt.Errorf("issuer %q is not a URL", issuerURL)
	}
	if !strings.EqualFold(hostPort(u), hostPort(iu)) {
		return fmt.Errorf("discovery document: jwks_uri %q is not on the issuer's host %s", keysURL, hostPort(iu))
	}
	switch {
	case u.Scheme == "https" && iu.Scheme == "https":
		return nil
	case u.Scheme == "http" && iu.Scheme == "http" && loopback(iu.Hostname()):
		return nil
	}
	return fmt.Errorf("discovery document: jwks_uri %q is not https", keysURL)
}

// hostPort is a URL's host with its port, the scheme's default spelled
// out, so https://h and https://h:443 are one host.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// fetchError is a fetch from an issuer that gave no usable answer: no
// connection, a status other than 200, a redirect, an answer over
// maxFetchBytes. Key set fetches that fail are told from signatures that
// do not verify by it (a transient 503, not a 401).
type fetchError struct {
	url    string
	reason string
	err    error
}

func (e *fetchError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("GET %s: %s: %v", e.url, e.reason, e.err)
	}
	return fmt.Sprintf("GET %s: %s", e.url, e.reason)
}

func (e *fetchError) Unwrap() error { return e.err }

// boundedTransport reads an issuer's answer whole, up to maxFetchBytes,
// and turns every failure into a *fetchError.
type boundedTransport struct {
	base http.RoundTripper
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	where := req.URL.Redacted()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, &fetchError{url: where, reason: "no answer", err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, &fetchError{url: where, reason: "answered " + resp.Status}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
	if err != nil {
		return nil, &fetchError{url: where, reason: "answer cut short", err: err}
	}
	if len(body) > maxFetchBytes {
		return nil, &fetchError{url: where, reason: fmt.Sprintf("answer over %d bytes", maxFetchBytes)}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
