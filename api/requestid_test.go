package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRequestWithoutTokenCannotFillTheLog: a request with no token sends
// a long X-Request-ID and a long path; the answer does not echo the ID, and
// the server's log line keeps neither whole. A short, plain ID is kept.
func TestRequestWithoutTokenCannotFillTheLog(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	long := strings.Repeat("A", 400<<10)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/"+strings.Repeat("p", 400<<10), nil)
	req.Header.Set("X-Request-ID", long)
	before := len(f.logs.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	echoed := resp.Header.Get("X-Request-ID")
	logged := len(f.logs.String()) - before
	t.Logf("%d bytes of request: %d, echoed X-Request-ID of %d bytes, %d bytes of log", 2*len(long), resp.StatusCode, len(echoed), logged)
	if len(echoed) > 64 || echoed == "" {
		t.Errorf("X-Request-ID answered with %d bytes, want a generated one of at most 64", len(echoed))
	}
	if logged > 4096 {
		t.Errorf("one request without a token wrote %d bytes of log", logged)
	}

	req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/healthz", nil)
	req.Header.Set("X-Request-ID", "ci-job-42.retry_1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-ID"); got != "ci-job-42.retry_1" {
		t.Errorf("a plain X-Request-ID came back as %q", got)
	}
}
