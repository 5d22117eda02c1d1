package cli

import (
	"testing"

	"github.com/refkeeper/refkeeper/client"
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

// pinnedServer is a server with group/app (testdata.MergeRequestProject)
// on a repos root and a Redis of its own, and an API client of it.
type pinnedServer struct {
	root string
	p    *testdata.MergeRequestProject
	r    *testdata.Redis
	srv  *testdata.Server
	api  *client.Client
}

// startPinnedServer starts pinnedServer; redisOptions (a query string
// such as "?read_timeout=300ms", or "") go on the server's Redis URL.
func startPinnedServer(tb testing.TB, redisOptions string) *pinnedServer {
	tb.Helper()
	s := &pinnedServer{root: tb.TempDir(), r: testdata.StartRedis(tb)}
	s.p = testdata.NewMergeRequestProject(tb, s.root)
	s.srv = startServer(tb, "--repos", s.root, "--redis", s.r.URL()+redisOptions)
	s.api = apiClient(tb, s.srv.Base)
	return s
}

// pin pins group/app's pipeline id as req; a failure ends the test.
func (s *pinnedServer) pin(tb testing.TB, id int64, req client.PinRequest) *client.Pin {
	tb.Helper()
	pin, _, err := s.api.Pin(tb.Context(), "group/app", id, req)
	if err != nil {
		tb.Fatal(err)
	}
	return pin
}
