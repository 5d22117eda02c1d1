package api

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/refkeeper/refkeeper/githttp"
)

// RateLimit is requests per second and the burst allowed above it; a zero
// Rate turns the limit off.
type RateLimit struct {
	Rate  float64
	Burst int
	// MaxKeys bounds how many buckets (client addresses or tokens) are
	// kept; past it the least recently used bucket is dropped, so a client
	// that comes back starts with a full burst. Zero: DefaultMaxKeys.
	MaxKeys int
}

// DefaultMaxKeys is RateLimit.MaxKeys when zero: about 25 MB of buckets
// (measured: 24 MB for 100,000 IPv4 addresses).
const DefaultMaxKeys = 100_000

// errRateLimited carries Retry-After through the error handler.
var errRateLimited = &httpError{Status: http.StatusTooManyRequests, Code: codeRateLimited,
	Message: "too many requests; slow down and retry"}

// buckets is one token bucket per key, the least recently used dropped
// past a hard cap, so neither many addresses nor many tokens can grow it.
type buckets struct {
	limit rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	lru  *list.List // of *bucket, most recently used first
	keys map[string]*list.Element
}

type bucket struct {
	key string
	lim *rate.Limiter
}

func newBuckets(limit RateLimit) *buckets {
	burst := limit.Burst
	if burst < 1 {
		burst = max(1, int(2*limit.Rate))
	}
	n := limit.MaxKeys
	if n <= 0 {
		n = DefaultMaxKeys
	}
	return &buckets{limit: rate.Limit(limit.Rate), burst: burst, max: n, lru: list.New(), keys: map[string]*list.Element{}}
}

// allow takes one request from key's bucket.
func (b *buckets) allow(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.keys[key]; ok {
		b.lru.MoveToFront(e)
		return e.Value.(*bucket).lim.AllowN(now, 1)
	}
	if b.lru.Len() >= b.max {
		oldest := b.lru.Back()
		b.lru.Remove(oldest)
		delete(b.keys, oldest.Value.(*bucket).key)
	}
	nb := &bucket{key: key, lim: rate.NewLimiter(b.limit, b.burst)}
	b.keys[key] = b.lru.PushFront(nb)
	return nb.lim.AllowN(now, 1)
}

func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys)
}

// rateLimiter limits requests per key; an empty key is not limited here.
// Probes and scrapers are never limited: they come often, from one
// address.
func rateLimiter(limit RateLimit, key func(echo.Context) string) echo.MiddlewareFunc {
	b := newBuckets(limit)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if limit.Rate <= 0 {
				return next(c)
			}
			switch c.Request().URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return next(c)
			}
			if k := key(c); k != "" && !b.allow(k, time.Now()) {
				return errRateLimited
			}
			return next(c)
		}
	}
}

// addressKey is the client's address as the IP extractor found it (see
// clientAddr), IPv6 addresses by their /64: one host usually holds a
// whole /64, and a key per address would give it 2^64 buckets.
func addressKey(c echo.Context) string {
	a, err := netip.ParseAddr(c.RealIP())
	if err != nil {
		return c.RealIP()
	}
	return addressBucket(a)
}

func addressBucket(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// tokenKey is a digest of the presented token, never the token itself (the
// limiter's memory holds no secret), and only of a token known to be valid:
// made-up tokens would each make a bucket. An invalid token counts against
// its address alone. The token's grant is kept in the request (grantOf),
// so requireToken and the git mount do not verify it again.
func tokenKey(tokens *authenticator, signer *githttp.FetchSigner) func(echo.Context) string {
	return func(c echo.Context) string {
		t := presentedToken(c.Request(), true)
		if t == "" {
			return ""
		}
		if _, err := tokens.grantOf(c, t); err != nil {
			if _, err := signer.Verify(t); err != nil {
				return ""
			}
		}
		d := sha256.Sum256([]byte(t))
		return hex.EncodeToString(d[:16])
	}
}

// ParseTrustedProxies reads a comma-separated list of CIDRs (a bare address
// is a /32 or /128) for Config.TrustedProxies.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// clientAddr is the address of the client behind a request. The
// connection's address, unless it is a trusted proxy: then X-Forwarded-For
// is read from the right (each proxy appends the address it saw), past
// every trusted address, and the first other one is the client. An entry
// that is not an address ends the walk at the proxy that appended it:
// what lies left of it is the client's to make up.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := remote.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			break
		}
	}
	return addr.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
