package api

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the OpenAPI 3.1 document of every route New serves
// but the git mount; openapi_test.go holds it to the real answers.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIHandler serves the document with a strong ETag of its content, so
// clients and caches revalidate cheaply and see a new one after an upgrade.
func openAPIHandler() echo.HandlerFunc {
	sum := sha256.Sum256(openAPIDocument)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		if etagMatches(c.Request().Header.Get("If-None-Match"), etag) {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
	}
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110, 13.1.2):
// any listed tag, W/ or not, or "*".
func etagMatches(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
