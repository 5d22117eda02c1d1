package client_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// apiToken is the API token of every server these tests start.
const apiToken = "client-test-token-0123456789"

// TestMain removes the refkeeper binary the tests built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

// startServer runs `refkeeper serve` with the API token and the given flags,
// listening on listen (empty: a port the kernel picks), and waits until it
// serves. Cleanup stops it with SIGTERM.
func startServer(tb testing.TB, listen string, args ...string) *testdata.Server {
	tb.Helper()
	args = append([]string{"--tokens", apiToken}, args...)
	if listen != "" {
		args = append([]string{"--listen", listen}, args...)
	}
	return testdata.StartServer(tb, args...)
}

// rawGet fetches path with the API token and answers the body as sent.
func rawGet(tb testing.TB, base, path string) []byte {
	tb.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
