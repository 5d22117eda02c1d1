package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// seriesCount is how many time series /metrics shows now.
func seriesCount(t *testing.T, f *fixture) int {
	t.Helper()
	resp, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}

// TestMetricLabelsStayBounded: requests with invented methods and paths,
// and no token, add at most a handful of series to /metrics (one per
// method kind, status and route pattern), whatever they invent.
func TestMetricLabelsStayBounded(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", p+"/pipelines", "") // the routes' usual series exist
	before := seriesCount(t, f)
	client := &http.Client{}
	for i := range 2000 {
		method := fmt.Sprintf("M%dX", i)
		path := fmt.Sprintf("/invented/%d", i)
		switch i % 4 {
		case 1:
			path = fmt.Sprintf("/api/v1/projects/x%d/pipelines/%d/ref", i, i)
		case 2:
			path = fmt.Sprintf("/git/p%d.git/info/refs", i)
		case 3:
			method = []string{"GET", "POST", "PUT", "DELETE"}[i%3]
		}
		req, err := http.NewRequest(method, f.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	after := seriesCount(t, f)
	t.Logf("/metrics: %d series before, %d after 2000 requests with invented methods and paths", before, after)
	if after-before > 100 {
		t.Errorf("2000 invented requests added %d series", after-before)
	}
}
