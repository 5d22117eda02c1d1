package testdata

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

var placeholder = regexp.MustCompile(`\$\{[A-Z_]+\}`)

// HookPayload reads the webhook payload example testdata/hooks/<name> (see
// the README there for where each comes from) with every ${KEY} replaced
// by vars[KEY]. A placeholder left over fails the test.
func HookPayload(tb testing.TB, name string, vars map[string]string) []byte {
	tb.Helper()
	_, self, _, _ := runtime.Caller(0)
	body, err := os.ReadFile(filepath.Join(filepath.Dir(self), "hooks", name))
	if err != nil {
		tb.Fatalf("reading payload: %v", err)
	}
	for k, v := range vars {
		body = bytes.ReplaceAll(body, []byte("${"+k+"}"), []byte(v))
	}
	if left := placeholder.Find(body); left != nil {
		tb.Fatalf("payload %s: %s has no value", name, left)
	}
	return body
}

// HookEdit changes one field of an example for a test case: it replaces the
// first old in body by new, and fails the test when body has no old.
func HookEdit(tb testing.TB, body []byte, old, new string) []byte {
	tb.Helper()
	i := bytes.Index(body, []byte(old))
	if i < 0 {
		tb.Fatalf("payload has no %q", old)
	}
	out := append([]byte{}, body[:i]...)
	out = append(out, new...)
	return append(out, body[i+len(old):]...)
}

// HMACHex is the lower-case hex HMAC-SHA256 of body under secret: GitHub's
// X-Hub-Signature-256 after "sha256=", and Gitea's X-Gitea-Signature.
func HMACHex(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// HookCapture reads a delivery captured from a real host,
// testdata/hooks/<name> (an HTTP request as it arrived: request line,
// headers, body; see the README there), and answers its headers and its
// body with each pair of replace (old, new) applied in turn: a test that
// maps the captured repository and commits to its own. An old that the
// body lacks fails the test. A changed body no longer matches the captured
// signature: the test signs what it sends.
func HookCapture(tb testing.TB, name string, replace ...string) (http.Header, []byte) {
	tb.Helper()
	_, self, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(self), "hooks", name))
	if err != nil {
		tb.Fatalf("reading capture: %v", err)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		tb.Fatalf("capture %s: %v", name, err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		tb.Fatalf("capture %s: %v", name, err)
	}
	if len(replace)%2 != 0 {
		tb.Fatalf("HookCapture: replace is pairs of old and new")
	}
	for i := 0; i < len(replace); i += 2 {
		if !bytes.Contains(body, []byte(replace[i])) {
			tb.Fatalf("capture %s has no %q", name, replace[i])
		}
		body = bytes.ReplaceAll(body, []byte(replace[i]), []byte(replace[i+1]))
	}
	return req.Header, body
}
