package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// benchEnv runs the side-by-side benchmark: REFKEEPER_BENCH=full (the
// sizes of the targets) or smoke (small sizes, to prove it still works).
// It measures and reports; it asserts no timings.
const benchEnv = "REFKEEPER_BENCH"

// benchSizes are one run's sizes.
type benchSizes struct {
	refs       []int // packed pipeline refs per repository for pin throughput
	big        int   // the large repository (GC, adoption, fetch)
	expired    int   // expired pins the GC deletes in the large repository
	pins       int   // pins per throughput measurement
	oneByOne   int   // single deletes timed to extrapolate the one-by-one path
	fetchRound int
}

var benchPlans = map[string]benchSizes{
	"full":  {refs: []int{0, 10_000, 100_000}, big: 100_000, expired: 10_000, pins: 2000, oneByOne: 40, fetchRound: 10},
	"smoke": {refs: []int{0, 1000}, big: 2000, expired: 200, pins: 100, oneByOne: 5, fetchRound: 2},
}

// benchRow is one line of the report.
type benchRow struct {
	what, refkeeper, baseline, ratio, target, verdict string
}

func TestBench(t *testing.T) {
	plan, ok := benchPlans[os.Getenv(benchEnv)]
	if !ok {
		t.Skipf("set %s=full (make bench) or smoke to run the benchmark", benchEnv)
	}
	var rows []benchRow
	add := func(r benchRow) {
		rows = append(rows, r)
		t.Logf("%s: %s vs %s (%s) %s", r.what, r.refkeeper, r.baseline, r.ratio, r.verdict)
	}
	root := t.TempDir()
	r := testdata.StartRedis(t)
	rdb := r.Client(t)
	big, bigSHA := packedRepo(t, root, "bench/big", plan.big)
	// Request logs at warn: at a thousand requests a second the INFO lines
	// would measure the test's log buffer, not the service.
	srv := startProcess(t, "--repos", root, "--redis", r.URL(), "--role", "api", "--retention", "1s",
		"--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	pid := srv.cmd.Process.Pid
	client := benchClient(16)

	// Adoption of every ref of the large repository, with Redis empty.
	memBefore := redisMemory(t, rdb.Info(t.Context(), "memory").Val())
	start := time.Now()
	res := benchCall(t, client, srv, "POST", "/api/v1/gc", "")
	adoption := time.Since(start)
	if res["adopted"] != float64(plan.big) {
		t.Fatalf("adopted %v, want %d", res["adopted"], plan.big)
	}
	perPin := float64(redisMemory(t, rdb.Info(t.Context(), "memory").Val())-memBefore) / float64(plan.big)
	add(benchRow{fmt.Sprintf("adopt %d unknown refs (Redis emptied)", plan.big), dur(adoption), "", "", "< 10 s", verdict(adoption < 10*time.Second)})
	add(benchRow{"Redis memory per pin", fmt.Sprintf("%.0f B", perPin), "", "", "< 512 B", verdict(perPin < 512)})

	// A periodic sweep with nothing expired over every live ref.
	start = time.Now()
	benchCall(t, client, srv, "POST", "/api/v1/gc?reconcile=auto", "")
	idle := time.Since(start)
	add(benchRow{fmt.Sprintf("sweep, nothing expired, %d live refs", plan.big), dur(idle), "", "", "< 50 ms", verdict(idle < 50*time.Millisecond)})

	// GC of expired refs in the large repository, against one transaction
	// (the floor) and one process per ref (timed on a sample).
	ids := make([]int, plan.expired)
	for i := range ids {
		ids[i] = i + 1
	}
	parallel(8, ids, func(id int) {
		benchCall(t, client, srv, "POST", fmt.Sprintf("/api/v1/projects/bench%%2Fbig/pipelines/%d/finish", id), "")
	})
	time.Sleep(1100 * time.Millisecond) // retention 1s
	start = time.Now()
	res = benchCall(t, client, srv, "POST", "/api/v1/gc?reconcile=auto", "")
	gc := time.Since(start)
	if res["deleted"] != float64(plan.expired) {
		t.Fatalf("gc deleted %v, want %d", res["deleted"], plan.expired)
	}
	floorRepo, _ := packedRepoWithSHA(t, root, "floor/gc", plan.big, bigSHA, big)
	floor := timeGit(t, floorRepo, updateLines("delete", ids, bigSHA))
	sampleRepo, _ := packedRepoWithSHA(t, root, "floor/onebyone", plan.big, bigSHA, big)
	start = time.Now()
	for _, id := range ids[:plan.oneByOne] {
		gitRun(t, sampleRepo, "", "update-ref", "-d", fmt.Sprintf("refs/pipelines/%d", id), bigSHA)
	}
	oneByOne := time.Since(start) / time.Duration(plan.oneByOne) * time.Duration(plan.expired)
	add(benchRow{fmt.Sprintf("GC %d expired refs in %d", plan.expired, plan.big), dur(gc), "1 transaction " + dur(floor), ratio(gc, floor), "≤ 1.5x floor", verdict(float64(gc) <= 1.5*float64(floor))})
	add(benchRow{"  one delete per process (extrapolated)", dur(oneByOne), "", ratio(oneByOne, gc) + " of refkeeper", "", ""})

	// Pin throughput and latency over HTTP, against one git process per ref
	// and one transaction, on repositories of each size.
	next := 10_000_000
	for _, n := range plan.refs {
		name := fmt.Sprintf("bench/r%d", n)
		dir, sha := packedRepo(t, root, name, n)
		project := strings.ReplaceAll(name, "/", "%2F")
		floorIDs := idRange(&next, plan.pins)
		floorTime := timeGit(t, dir, updateLines("create", floorIDs, sha))
		for _, conc := range []int{1, 8} {
			pinIDs := idRange(&next, plan.pins)
			lat, total := pinLoad(t, client, srv, project, sha, pinIDs, conc)
			gitIDs := idRange(&next, plan.pins)
			glat, gtotal := gitPerRef(t, dir, sha, gitIDs, conc)
			rate, grate := float64(plan.pins)/total.Seconds(), float64(plan.pins)/gtotal.Seconds()
			row := benchRow{
				what:      fmt.Sprintf("pin, %d refs, concurrency %d", n, conc),
				refkeeper: fmt.Sprintf("%.0f/s p50 %s p99 %s", rate, durMS(pct(lat, 50)), durMS(pct(lat, 99))),
				baseline:  fmt.Sprintf("process per ref %.0f/s p99 %s; 1 transaction %.0f/s", grate, durMS(pct(glat, 99)), float64(plan.pins)/floorTime.Seconds()),
				ratio:     fmt.Sprintf("%.2fx", rate/grate),
			}
			if conc == 8 && n == plan.refs[len(plan.refs)-1] {
				row.target = "≥ 3x, p99 ≤ 20 ms"
				row.verdict = verdict(rate >= 3*grate && pct(lat, 99) <= 20*time.Millisecond)
			}
			add(row)
		}
	}

	// A runner's fetch of one pipeline ref with many refs against one ref.
	oneDir, oneSHA := packedRepo(t, root, "bench/one", 0)
	benchCall(t, client, srv, "PUT", "/api/v1/projects/bench%2Fone/pipelines/1/ref", `{"sha":"`+oneSHA+`"}`)
	benchCall(t, client, srv, "PUT", fmt.Sprintf("/api/v1/projects/bench%%2Fbig/pipelines/%d/ref", plan.big+1), `{"sha":"`+bigSHA+`"}`)
	_ = oneDir
	fetchOne := timeFetch(t, srv, "bench/one", 1, plan.fetchRound)
	fetchBig := timeFetch(t, srv, "bench/big", plan.big+1, plan.fetchRound)
	add(benchRow{fmt.Sprintf("runner fetch (protocol v2), %d refs", plan.big), dur(fetchBig), "1 ref " + dur(fetchOne), ratio(fetchBig, fetchOne), "≤ 1.2x", verdict(float64(fetchBig) <= 1.2*float64(fetchOne))})

	rss := peakRSS(t, pid)
	add(benchRow{"server peak RSS", fmt.Sprintf("%.0f MB", float64(rss)/(1<<20)), "", "", "< 100 MB", verdict(rss < 100<<20)})

	report := renderBench(os.Getenv(benchEnv), rows)
	fmt.Print(report)
	out := filepath.Join("..", "..", "bench-results")
	if err := os.MkdirAll(out, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(out, "latest.md"), []byte(report), 0o644)
	}
}

func renderBench(plan string, rows []benchRow) string {
	host, _ := os.Hostname()
	var b strings.Builder
	fmt.Fprintf(&b, "refkeeper benchmark (%s), %s, %s, %d CPUs\n\n", plan, time.Now().UTC().Format(time.RFC3339), host, runtimeCPUs())
	b.WriteString("| measurement | refkeeper | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.what, r.refkeeper, r.baseline, r.ratio, r.target, r.verdict)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return durMS(d)
	}
}

func durMS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2fx", float64(a)/float64(b)) }

func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func idRange(next *int, n int) []int {
	ids := make([]int, n)
	for i := range ids {
		*next++
		ids[i] = *next
	}
	return ids
}

// parallel runs fn over ids with conc workers and answers each call's time.
func parallel(conc int, ids []int, fn func(int)) []time.Duration {
	lat := make([]time.Duration, len(ids))
	work := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				start := time.Now()
				fn(ids[i])
				lat[i] = time.Since(start)
			}
		}()
	}
	for i := range ids {
		work <- i
	}
	close(work)
	wg.Wait()
	return lat
}

func pinLoad(t *testing.T, client *http.Client, srv *processServer, project, sha string, ids []int, conc int) ([]time.Duration, time.Duration) {
	start := time.Now()
	lat := parallel(conc, ids, func(id int) {
		benchCall(t, client, srv, "PUT", fmt.Sprintf("/api/v1/projects/%s/pipelines/%d/ref", project, id), `{"sha":"`+sha+`"}`)
	})
	return lat, time.Since(start)
}

func gitPerRef(t *testing.T, dir, sha string, ids []int, conc int) ([]time.Duration, time.Duration) {
	start := time.Now()
	lat := parallel(conc, ids, func(id int) {
		gitRun(t, dir, "", "update-ref", fmt.Sprintf("refs/pipelines/%d", id), sha, strings.Repeat("0", 40))
	})
	return lat, time.Since(start)
}

func updateLines(verb string, ids []int, sha string) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s refs/pipelines/%d %s\n", verb, id, sha)
	}
	return b.String()
}

func timeGit(t *testing.T, dir, stdin string) time.Duration {
	start := time.Now()
	gitRun(t, dir, stdin, "update-ref", "--stdin")
	return time.Since(start)
}

func gitRun(t *testing.T, dir, stdin string, args ...string) {
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("git %v: %v\n%s", args, err, out)
	}
}

func timeFetch(t *testing.T, srv *processServer, project string, id, rounds int) time.Duration {
	var times []time.Duration
	for range rounds {
		work := t.TempDir()
		if out, err := runnerGit(t, work, "init", "-q", "."); err != nil {
			t.Fatal(out)
		}
		start := time.Now()
		out, err := runnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken, "-c", "protocol.version=2",
			"fetch", "-q", "--depth=1", srv.base+"/git/"+project+".git", fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", id, id))
		times = append(times, time.Since(start))
		if err != nil {
			t.Fatalf("fetch: %v\n%s", err, out)
		}
	}
	return pct(times, 50)
}

// packedRepo makes a bare repository with one commit and n pipeline refs,
// written straight into packed-refs (creating 100k refs through git takes
// minutes on this disk), and answers its path and the commit.
func packedRepo(t *testing.T, root, name string, n int) (string, string) {
	g := testdata.NewBareRepo(t, root, name)
	sha := g.Commit(t, "main", map[string]string{"README": "bench\n"}, "bench")
	writePackedRefs(t, g.Dir, sha, n)
	return g.Dir, sha
}

// packedRepoWithSHA is packedRepo with the objects of another repository, so
// the same SHA is valid in both.
func packedRepoWithSHA(t *testing.T, root, name string, n int, sha, from string) (string, string) {
	g := testdata.NewBareRepo(t, root, name)
	g.Git(t, "fetch", "-q", from, "refs/heads/main:refs/heads/main")
	writePackedRefs(t, g.Dir, sha, n)
	return g.Dir, sha
}

func writePackedRefs(t *testing.T, dir, sha string, n int) {
	names := make([]string, n)
	for i := range names {
		names[i] = "refs/pipelines/" + strconv.Itoa(i+1)
	}
	sort.Strings(names)
	f, err := os.Create(filepath.Join(dir, "packed-refs"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("# pack-refs with: peeled fully-peeled sorted \n")
	for _, name := range names {
		w.WriteString(sha + " " + name + "\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func benchClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}, Timeout: 5 * time.Minute}
}

func benchCall(t *testing.T, client *http.Client, srv *processServer, method, path, body string) map[string]any {
	req, _ := http.NewRequest(method, srv.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	out := decodeJSON(resp)
	if resp.StatusCode >= 400 {
		t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

func redisMemory(t *testing.T, info string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no used_memory in INFO")
	return 0
}

// peakRSS reads the process's high-water resident set (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func runtimeCPUs() int {
	n := 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n = strings.Count(string(data), "processor\t:")
	}
	return n
}
