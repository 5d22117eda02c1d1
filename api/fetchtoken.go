package api

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

// fetchClaims is what a scoped fetch token grants: read access to one
// pipeline ref of one project, for one incarnation of its pin (the pin's
// creation time), so a token outlives neither the pin's deletion nor a later
// pin of the same pipeline.
type fetchClaims struct {
	Project    string `json:"p"`
	PipelineID int64  `json:"i"`
	CreatedMS  int64  `json:"c"`
}

// fetchSigner issues and checks scoped fetch tokens with HMAC-SHA256. The
// first key signs; every key verifies, so keys rotate without a cut: add the
// new key first, keep the old one until the pins it signed are gone.
type fetchSigner struct {
	keys [][]byte
}

var errBadFetchToken = errors.New("not a valid fetch token")

func newFetchSigner(keys [][]byte) (*fetchSigner, error) {
	if len(keys) == 0 {
		return nil, errors.New("api: at least one fetch token key is required")
	}
	for _, k := range keys {
		if len(k) < 16 {
			return nil, errors.New("api: fetch token keys must be at least 16 bytes")
		}
	}
	return &fetchSigner{keys: keys}, nil
}

func (s *fetchSigner) mac(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(fetchTokenPrefix))
	m.Write(payload)
	return m.Sum(nil)
}

// sign issues the token of a pin.
func (s *fetchSigner) sign(p refs.Pin) string {
	payload, _ := json.Marshal(fetchClaims{Project: string(p.Project), PipelineID: int64(p.PipelineID), CreatedMS: p.CreatedAt.UnixMilli()})
	enc := base64.RawURLEncoding
	return fetchTokenPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(s.mac(s.keys[0], payload))
}

// verify checks a token's signature (in constant time) and answers its claims.
func (s *fetchSigner) verify(token string) (fetchClaims, error) {
	rest, ok := strings.CutPrefix(token, fetchTokenPrefix)
	if !ok {
		return fetchClaims{}, errBadFetchToken
	}
	p64, sig64, ok := strings.Cut(rest, ".")
	if !ok {
		return fetchClaims{}, errBadFetchToken
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(sig64)
	if err1 != nil || err2 != nil {
		return fetchClaims{}, errBadFetchToken
	}
	valid := false
	for _, k := range s.keys {
		valid = hmac.Equal(sig, s.mac(k, payload)) || valid
	}
	if !valid {
		return fetchClaims{}, errBadFetchToken
	}
	var c fetchClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fetchClaims{}, errBadFetchToken
	}
	return c, nil
}

// matches reports whether the claims are for this pin as it is now: same
// project and pipeline, same incarnation, and not deleted.
func (c fetchClaims) matches(p refs.Pin) bool {
	return c.Project == string(p.Project) && c.PipelineID == int64(p.PipelineID) &&
		c.CreatedMS == p.CreatedAt.UnixMilli() && p.State != refs.StateDeleted
}
