package systest

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// scrape reads /metrics.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// metricValue is the value of the one sample of /metrics text named by
// series (name and labels as Prometheus prints them); ok false if absent.
func metricValue(text, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// The serve binary with --maintenance-interval housekeeps a registered
// mirror, never the local project beside it, and /metrics shows the
// mirror's size, last fetch and the runs.
func TestMirrorHousekeepingAndMetricsEndToEnd(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root) // the local project group/app
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := u.CredentialsFile(t, "gh")
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams, "--maintenance-interval", "1s")
	const api = "/api/v1/projects/mirrors%2Fgh"
	srv.registerMirror(t, api, fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "gh"}`, u.URL()))
	before := time.Now()
	if code, pin := srv.call(t, "PUT", api+"/pipelines/7/ref", `{"merge_request_iid": 1}`); code != 201 || pin["sha"] != u.Merge {
		t.Fatalf("pin = %d %v", code, pin)
	}
	var text string
	testdata.WaitFor(t, "a housekeeping run in /metrics", 30*time.Second, func() bool {
		text = scrape(t, srv.Base)
		n, _ := metricValue(text, "refkeeper_mirror_housekeeping_runs_total")
		return n >= 1
	})
	if n, ok := metricValue(text, "refkeeper_mirror_housekeeping_failures_total"); !ok || n != 0 {
		t.Errorf("housekeeping failures = %v (present %v), want 0", n, ok)
	}
	size, ok := metricValue(text, `refkeeper_mirror_size_bytes{project="mirrors/gh"}`)
	var want int64
	filepath.WalkDir(filepath.Join(root, "mirrors", "gh.git", "objects"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				want += info.Size()
			}
		}
		return nil
	})
	if !ok || want == 0 || size != float64(want) {
		t.Errorf("refkeeper_mirror_size_bytes = %v (present %v), want %d, the size of its object files", size, ok, want)
	}
	fetched, ok := metricValue(text, `refkeeper_mirror_last_fetch_timestamp_seconds{project="mirrors/gh"}`)
	if !ok || fetched < float64(before.Add(-time.Minute).Unix()) {
		t.Errorf("refkeeper_mirror_last_fetch_timestamp_seconds = %v (present %v), want a time after %v", fetched, ok, before)
	}
	if strings.Contains(text, `project="group/app"`) {
		t.Errorf("the local project has mirror series:\n%s", grepLines(text, "group/app"))
	}
	if code, pin := srv.call(t, "GET", api+"/pipelines/7/ref", ""); code != 200 || pin["sha"] != u.Merge {
		t.Errorf("after housekeeping the pin is %d %v", code, pin)
	}
}
