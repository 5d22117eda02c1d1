package systest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the refkeeper binary the tests built (testdata.Main).
func TestMain(m *testing.M) { testdata.Main(m) }

// testToken is the API token of every test server.
const testToken = "test-token-0123456789abcdef"

// exitGone is the exit status of `refkeeper checkout` when the pin is gone
// (README: retry bots re-pin on it).
const exitGone = 3

// server is `refkeeper serve` as a process of its own, with the test's
// requests as orchestrators and hosts send them.
type server struct{ *testdata.Server }

// startServer runs the binary's serve with the test token and args, and
// waits until it serves. Cleanup stops it with SIGTERM and checks it exits 0.
func startServer(tb testing.TB, args ...string) *server {
	tb.Helper()
	return startServerTokens(tb, append([]string{"--tokens", testToken}, args...)...)
}

// startServerTokens is startServer without the test token: args say where
// the tokens come from, if from anywhere.
func startServerTokens(tb testing.TB, args ...string) *server {
	tb.Helper()
	return &server{testdata.StartServer(tb, args...)}
}

// call sends a JSON request with the test token and decodes the JSON answer.
func (s *server) call(tb testing.TB, method, path, body string) (int, map[string]any) {
	tb.Helper()
	code, _, raw := s.as(tb, testToken, method, path, body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal([]byte(raw), &out); err != nil {
			tb.Fatalf("%s %s: %d with non-JSON body %q", method, path, code, raw)
		}
	}
	return code, out
}

// as sends a request with token as the bearer (body, when not empty, as
// JSON) and answers its status, headers and body.
func (s *server) as(tb testing.TB, token, method, path, body string) (int, http.Header, string) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.Base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// registerMirror registers the mirror at path (/api/v1/projects/…) with
// body, waits until its first clone has ended and fails the test unless it
// is ready.
func (s *server) registerMirror(tb testing.TB, path, body string) {
	tb.Helper()
	code, pj := s.call(tb, "PUT", path, body)
	if code != 202 || pj["kind"] != "mirror" {
		tb.Fatalf("register = %d %v, want 202", code, pj)
	}
	testdata.WaitFor(tb, "the clone", 30*time.Second, func() bool {
		_, pj = s.call(tb, "GET", path, "")
		return pj["state"] != "cloning"
	})
	if pj["state"] != "ready" {
		tb.Fatalf("mirror = %v, want ready", pj)
	}
}

// httpDo sends an authorized JSON request and returns the raw response.
func httpDo(method, url, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

// decodeJSON reads a JSON answer; a body that is not JSON decodes to nil.
func decodeJSON(resp *http.Response) map[string]any {
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// project is a repos root with group/app: main, a feature branch and merge
// request 12's merge ref.
type project struct {
	root          string
	git           *testdata.Repo
	c1, c2, merge string
}

func newProject(tb testing.TB) *project {
	tb.Helper()
	root := tb.TempDir()
	g := testdata.NewMergeRequestProject(tb, root)
	return &project{root: root, git: g.Repo, c1: g.First, c2: g.Second, merge: g.Merge}
}

func (p *project) hasRef(tb testing.TB, id int) bool {
	_, ok := p.git.RefSHA(tb, fmt.Sprintf("refs/pipelines/%d", id))
	return ok
}

// apiBase is the API path of group/app.
const apiBase = "/api/v1/projects/group%2Fapp"

// errCode is the code of an error answer.
func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// grepLines answers the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
