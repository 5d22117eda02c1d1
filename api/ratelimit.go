package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// RateLimit is requests per second and the burst allowed above it; a zero
// Rate turns the limit off.
type RateLimit struct {
	Rate  float64
	Burst int
}

// errRateLimited carries Retry-After through the error handler.
var errRateLimited = &httpError{Status: http.StatusTooManyRequests, Code: codeRateLimited,
	Message: "too many requests; slow down and retry"}

// rateLimiter limits requests per key (a client address or a token digest)
// with one token bucket per key; idle buckets are dropped after a while.
func rateLimiter(limit RateLimit, key func(echo.Context) string) echo.MiddlewareFunc {
	burst := limit.Burst
	if burst < 1 {
		burst = max(1, int(2*limit.Rate))
	}
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: rate.Limit(limit.Rate), Burst: burst, ExpiresIn: 3 * time.Minute,
	})
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool {
			if limit.Rate <= 0 || key(c) == "" {
				return true
			}
			switch c.Request().URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return true // probes and scrapers come often, from one address
			}
			return false
		},
		IdentifierExtractor: func(c echo.Context) (string, error) { return key(c), nil },
		Store:               store,
		DenyHandler:         func(echo.Context, string, error) error { return errRateLimited },
		ErrorHandler:        func(echo.Context, error) error { return errRateLimited },
	})
}

// addressKey is the connection's address: IPExtractor is ExtractIPDirect, so
// a forged X-Forwarded-For cannot pick another bucket.
func addressKey(c echo.Context) string { return c.RealIP() }

// tokenKey is a digest of the presented token (valid or not), never the
// token itself, so the limiter's memory holds no secret.
func tokenKey(c echo.Context) string {
	t := presentedToken(c.Request(), true)
	if t == "" {
		return ""
	}
	d := sha256.Sum256([]byte(t))
	return hex.EncodeToString(d[:16])
}
