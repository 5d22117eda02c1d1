package idtoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// What a 503 says of an issuer that could not be asked: never its URL
// (which issuers are trusted is no caller's business); the log has it.
const (
	opDiscovery = "verifying an ID token (its issuer's discovery)"
	opKeys      = "verifying an ID token (its issuer's keys)"
)

// errKeyFetchLimited is a token of an unknown key id while the issuer's
// key set may not be fetched again yet: maybe a key the issuer has just
// rotated in, so transient (503, retry), never a final 401.
var errKeyFetchLimited = errors.New("key set fetched too recently; fetched again shortly")

// keyGate spaces out one issuer's key set fetches for unknown key ids,
// whatever its discovery: a rate limit, one fetch at a time, and the last
// failure, which stands for keyFetchEvery.
type keyGate struct {
	limit *rate.Limiter
	sem   chan struct{} // holds one token while a fetch is under way

	mu       sync.Mutex
	failure  error
	failedAt time.Time
}

// keySet is one discovery's key set: fetched with it, and again (through
// the issuer's keyGate) for a token whose key id is not in it. It
// implements go-oidc's KeySet.
type keySet struct {
	url     string // the issuer's, for the log
	keysURL string
	client  *http.Client
	gate    *keyGate
	logger  *slog.Logger

	mu   sync.Mutex
	keys []jose.JSONWebKey
}

// fetchNote is where VerifySignature notes, in the verifying call's
// context, that the keys could not be had: go-oidc's verifier words every
// signature failure alike, and this one is a 503, not a 401.
type fetchNoteKey struct{}

type fetchNote struct{ err error }

func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, known := k.cached(kid)
	if payload, err := verifyWith(jws, keys, kid); err == nil || known {
		// A key id the set holds is checked against its key alone: a bad
		// signature under it is a forgery, not a rotation.
		return payload, err
	}
	keys, err = k.refresh(ctx, kid)
	if err != nil {
		if note, ok := ctx.Value(fetchNoteKey{}).(*fetchNote); ok && ctx.Err() == nil {
			note.err = err
		}
		return nil, err
	}
	return verifyWith(jws, keys, kid)
}

// cached answers the cached keys and whether one has the key id kid.
func (k *keySet) cached(kid string) ([]jose.JSONWebKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.keys {
		if kid != "" && key.KeyID == kid {
			return k.keys, true
		}
	}
	return k.keys, false
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("no published key verifies the signature")
}

// refresh fetches the key set again for a token of key id kid, as the
// issuer's keyGate lets it: one fetch at a time (a token that waited finds
// what the fetch before it brought), none while the last failure stands,
// none past the rate limit.
func (k *keySet) refresh(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	select {
	case k.gate.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-k.gate.sem }()
	if keys, known := k.cached(kid); known {
		return keys, nil
	}
	k.gate.mu.Lock()
	failure, failedAt := k.gate.failure, k.gate.failedAt
	k.gate.mu.Unlock()
	if failure != nil && time.Since(failedAt) < keyFetchEvery {
		return nil, failure
	}
	if !k.gate.limit.Allow() {
		return nil, errKeyFetchLimited
	}
	err := k.fetch(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err() // the caller left: says nothing of the issuer
	}
	k.gate.mu.Lock()
	k.gate.failure, k.gate.failedAt = err, time.Now()
	k.gate.mu.Unlock()
	if err != nil {
		k.logger.Error("ID token issuer's keys could not be fetched: tokens of unknown key ids are answered 503 meanwhile",
			"issuer", k.url, "err", err)
		return nil, err
	}
	keys, _ := k.cached(kid)
	return keys, nil
}

// fetch reads the key set from keysURL into the cache.
func (k *keySet) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.keysURL, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // bounded by the transport
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return &fetchError{url: req.URL.Redacted(), reason: fmt.Sprintf("not a key set: %v", err)}
	}
	k.mu.Lock()
	k.keys = set.Keys
	k.mu.Unlock()
	return nil
}
