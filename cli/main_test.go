package cli

import (
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the refkeeper binary the tests built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

// testToken is the API token of the servers these tests talk to.
const testToken = "test-token-0123456789abcdef"

// startServer runs the server binary's serve with the test token and args:
// the server the commands meet, as in a job.
func startServer(tb testing.TB, args ...string) *testdata.Server {
	tb.Helper()
	return testdata.StartServer(tb, append([]string{"--tokens", testToken}, args...)...)
}
