package githttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/refkeeper/refkeeper/refs"
)

// fetchTokenPrefix marks a scoped fetch token, so it is never mistaken for an
// API token (and is easy to find in a leaked log).
const fetchTokenPrefix = "rkf1_"

// FetchClaims is what a scoped fetch token grants: read access to one
// pipeline ref of one project, for one incarnation of its pin (the pin's
// creation time), so a token outlives neither the pin's deletion nor a later
// pin of the same pipeline.
type FetchClaims struct {
	Project    string `json:"p"`
	PipelineID int64  `json:"i"`
	CreatedMS  int64  `json:"c"`
	// SHA is the pinned commit. A pipeline ref never moves, so it tells
	// an adopted pin (whose creation time was lost) from an earlier,
	// deleted pin of the same pipeline that pinned another commit. Tokens
	// signed before it was added have none: they hold only for a pin whose
	// creation time is known.
	SHA string `json:"s,omitempty"`
	// job: the claims of a CI job's ID token (never signed into a fetch
	// token), which hold for any incarnation of its pin.
	job bool
}

// FetchSigner issues and checks scoped fetch tokens with HMAC-SHA256. The
// first key signs; every key verifies, so keys rotate without a cut: add the
// new key first, keep the old one until the pins it signed are gone.
type FetchSigner struct {
	keys [][]byte
}

// ErrBadFetchToken is a token that is not a fetch token this signer (with
// any of its keys) issued.
var ErrBadFetchToken = errors.New("not a valid fetch token")

// NewFetchSigner makes a signer of keys (at least one, each of at least 16
// bytes).
func NewFetchSigner(keys [][]byte) (*FetchSigner, error) {
	if len(keys) == 0 {
		return nil, errors.New("githttp: at least one fetch token key is required")
	}
	for _, k := range keys {
		if len(k) < 16 {
			return nil, errors.New("githttp: fetch token keys must be at least 16 bytes")
		}
	}
	return &FetchSigner{keys: keys}, nil
}

func (s *FetchSigner) mac(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(fetchTokenPrefix))
	m.Write(payload)
	return m.Sum(nil)
}

// Sign issues the token of a pin.
func (s *FetchSigner) Sign(p refs.Pin) string {
	payload, _ := json.Marshal(FetchClaims{Project: string(p.Project), PipelineID: int64(p.PipelineID), CreatedMS: p.CreatedAt.UnixMilli(), SHA: string(p.SHA)})
	enc := base64.RawURLEncoding
	return fetchTokenPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(s.mac(s.keys[0], payload))
}

// Verify checks a token's signature (in constant time) and answers its
// claims; ErrBadFetchToken when it is not a valid fetch token.
func (s *FetchSigner) Verify(token string) (FetchClaims, error) {
	rest, ok := strings.CutPrefix(token, fetchTokenPrefix)
	if !ok {
		return FetchClaims{}, ErrBadFetchToken
	}
	p64, sig64, ok := strings.Cut(rest, ".")
	if !ok {
		return FetchClaims{}, ErrBadFetchToken
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(sig64)
	if err1 != nil || err2 != nil {
		return FetchClaims{}, ErrBadFetchToken
	}
	valid := false
	for _, k := range s.keys {
		valid = hmac.Equal(sig, s.mac(k, payload)) || valid
	}
	if !valid {
		return FetchClaims{}, ErrBadFetchToken
	}
	var c FetchClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return FetchClaims{}, ErrBadFetchToken
	}
	return c, nil
}

// matches reports whether the claims are for this pin as it is now: same
// project and pipeline, same incarnation, and not deleted.
func (c FetchClaims) matches(p refs.Pin) bool {
	return c.Project == string(p.Project) && c.PipelineID == int64(p.PipelineID) &&
		(c.job || c.sameIncarnation(p)) && p.State != refs.StateDeleted
}

// sameIncarnation: the pin the token was issued for is this one. A pin
// whose record was adopted (Redis lost the record, the ref stayed) was
// created before it was first seen, at a time no record keeps any more: a
// token issued before then is taken to be its own when it names the same
// commit (an earlier pin of the pipeline that pinned another commit was
// deleted, and its token dies with it). A token without a commit cannot
// tell the two apart and is refused by an adopted pin.
func (c FetchClaims) sameIncarnation(p refs.Pin) bool {
	created := p.CreatedAt.UnixMilli()
	return c.CreatedMS == created ||
		p.Adopted && c.CreatedMS < created && c.SHA != "" && c.SHA == string(p.SHA)
}
