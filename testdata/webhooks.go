package testdata

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
