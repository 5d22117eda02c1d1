package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/refkeeper/refkeeper/testdata"
)

const (
	apiToken   = "deploy-test-token-0123456789"
	gitlabHook = "deploy-test-gitlab-hook-token"
)

// process is `refkeeper serve` running as its own process.
type process struct {
	base string
	logs *testdata.LockedBuffer
}

var servingAddr = regexp.MustCompile(`"msg":"refkeeper serving","addr":"([^"]+)"`)

// startProcess starts the built binary's serve on a free port and waits
// until it listens; cleanup sends SIGTERM and waits for it to exit.
func startProcess(tb testing.TB, args ...string) *process {
	tb.Helper()
	p := &process{logs: &testdata.LockedBuffer{}}
	cmd := exec.Command(testdata.RefkeeperBinary(tb),
		append([]string{"serve", "--listen", "127.0.0.1:0", "--tokens", apiToken}, args...)...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			tb.Errorf("refkeeper did not stop on SIGTERM:\n%s", p.logs)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingAddr.FindStringSubmatch(p.logs.String()); m != nil {
			p.base = "http://" + m[1]
			return p
		}
		select {
		case err := <-exited:
			tb.Fatalf("refkeeper exited before serving (%v):\n%s", err, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("refkeeper did not start:\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call sends a request with the API token (or the headers given) and
// decodes the JSON answer.
func (p *process) call(tb testing.TB, method, path, body string, headers map[string]string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if headers == nil {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			tb.Fatalf("%s %s: %d with non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// scrape reads /metrics as Prometheus does.
func (p *process) scrape(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("/metrics = %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("/metrics: %v", err)
	}
	return families
}

// exported is every series name the families give, with a histogram's
// _bucket, _sum and _count and a summary's _sum and _count, and for each
// the label names its series carry.
func exported(families map[string]*dto.MetricFamily) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for name, f := range families {
		ls := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = true
			}
		}
		names := []string{name}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = append(names, name+"_bucket", name+"_sum", name+"_count")
			ls["le"] = true
		case dto.MetricType_SUMMARY:
			names = append(names, name+"_sum", name+"_count")
		}
		if len(f.GetMetric()) == 0 {
			continue
		}
		for _, n := range names {
			out[n] = ls
		}
	}
	return out
}

// Labels every scrape adds to the series it stores.
var scrapeLabels = map[string]bool{"job": true, "instance": true, "": true}

// missingMetrics lists what the dashboard and rules use that the scrape
// lacks: a metric name, or a label name a matcher uses on it.
func missingMetrics(used map[string][]string, where map[string]string, have map[string]map[string]bool) []string {
	var missing []string
	for name, labels := range used {
		ls, ok := have[name]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, where[name]))
			continue
		}
		for _, l := range labels {
			if !scrapeLabels[l] && !ls[l] {
				missing = append(missing, fmt.Sprintf("label %s of %s (in %s)", l, name, where[name]))
			}
		}
	}
	sort.Strings(missing)
	return slices.Compact(missing)
}

// TestDashboardAndAlertsUseExportedMetrics runs the server against a real
// redis-server with a local project and a mirror of a real upstream, drives
// a pin, a runner's fetch, a finish and its deletion, and a webhook through
// it, and checks that every metric name (and matcher label) the dashboard
// and the alert rules use is on its /metrics.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	used, where := usedMetrics(t)
	if len(used) < 15 {
		t.Fatalf("the dashboard and rules use %d metrics: %v", len(used), used)
	}
	root := t.TempDir()
	local := testdata.NewMergeRequestProject(t, root)
	up := testdata.StartUpstream(t)
	creds := up.CredentialsFile(t, "up")
	r := testdata.StartRedis(t)
	srv := startProcess(t, "--repos", root, "--redis", r.URL(), "--gc-interval", "1s", "--retention", "1s",
		"--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams, "--gitlab-hook-token", gitlabHook, "--role", "all")

	// A mirror, cloned from the upstream and fetched again for a pin.
	const mirror = "/api/v1/projects/mirrors%2Fapp"
	if code, pj := srv.call(t, "PUT", mirror, fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "up"}`, up.URL()), nil); code != 202 {
		t.Fatalf("register mirror = %d %v", code, pj)
	}
	waitUntil(t, "the mirror's clone", 60*time.Second, func() bool {
		_, pj := srv.call(t, "GET", mirror, "", nil)
		return pj["state"] == "ready"
	})
	if code, pin := srv.call(t, "PUT", mirror+"/pipelines/7/ref", `{"merge_request_iid": 1}`, nil); code != 201 {
		t.Fatalf("pin on the mirror = %d %v", code, pin)
	}

	// A pin on the local project, fetched by a runner, finished, deleted.
	const app = "/api/v1/projects/group%2Fapp"
	code, pin := srv.call(t, "PUT", app+"/pipelines/1/ref", `{"sha": "`+local.First+`"}`, nil)
	if code != 201 {
		t.Fatalf("pin = %d %v", code, pin)
	}
	runnerFetch(t, pin["fetch_url"].(string), pin["refspec"].(string))
	if code, fin := srv.call(t, "POST", app+"/pipelines/1/finish", `{"status": "success"}`, nil); code != 200 {
		t.Fatalf("finish = %d %v", code, fin)
	}
	waitUntil(t, "the finished pin's deletion", 60*time.Second, func() bool {
		_, ok := local.RefSHA(t, "refs/pipelines/1")
		return !ok
	})

	// A GitLab delivery: its pipeline is pinned.
	delivery := testdata.HookPayload(t, "gitlab-pipeline-success.json",
		map[string]string{"SHA": local.Merge, "HEAD_SHA": local.Second, "BASE_SHA": local.First})
	code, answer := srv.call(t, "POST", "/hooks/gitlab", string(delivery),
		map[string]string{"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": gitlabHook, "Idempotency-Key": "deploy-1"})
	if code != 200 {
		t.Fatalf("GitLab delivery = %d %v", code, answer)
	}

	// Scrape until everything is there: the pin counts, mirror sizes and
	// queue state are snapshots a scrape refreshes.
	var missing []string
	waitUntil(t, "every metric the dashboard and rules use", 60*time.Second, func() bool {
		missing = missingMetrics(used, where, exported(srv.scrape(t)))
		return len(missing) == 0
	}, func() string { return "missing on /metrics:\n  " + strings.Join(missing, "\n  ") })
}

// runnerFetch fetches a pin's ref as a runner does, with the git CLI.
func runnerFetch(tb testing.TB, fetchURL, refspec string) {
	tb.Helper()
	work := tb.TempDir()
	env := []string{"HOME=" + tb.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	if out, err := run(tb, env, "git", "-C", work, "init", "-q"); err != nil {
		tb.Fatalf("git init: %v\n%s", err, out)
	}
	if out, err := run(tb, env, "git", "-C", work, "-c", "http.extraHeader=Authorization: Bearer "+apiToken,
		"fetch", "-q", "--depth=1", fetchURL, refspec); err != nil {
		tb.Fatalf("runner fetch: %v\n%s", err, out)
	}
}

// waitUntil polls cond until it holds, failing with what explain says at
// the deadline.
func waitUntil(tb testing.TB, what string, timeout time.Duration, cond func() bool, explain ...func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, e := range explain {
				msg += "\n" + e()
			}
			tb.Fatalf("timed out after %v waiting for %s%s", timeout, what, msg)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
