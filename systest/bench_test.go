package systest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// benchEnv runs the side-by-side benchmark: REFKEEPER_BENCH=full (the
// sizes of the targets) or smoke (small sizes, to prove it still works).
// It measures and reports; it asserts no timings. benchOnlyEnv picks one
// part: api (everything measured on an api-only server) or expiry (the
// deletions that tasks make at expires_at); empty: both.
const (
	benchEnv     = "REFKEEPER_BENCH"
	benchOnlyEnv = "REFKEEPER_BENCH_ONLY"
)

// benchSizes are one run's sizes.
type benchSizes struct {
	refs       []int // packed pipeline refs per repository for pin throughput
	big        int   // the large repository (GC, adoption, fetch)
	expired    int   // expired pins the GC deletes in the large repository
	pins       int   // pins per throughput measurement
	oneByOne   int   // single deletes timed to extrapolate the one-by-one path
	fetchRound int
	rounds     int // turns each pin path takes; the best counts
	expiry     expirySizes
}

var benchPlans = map[string]benchSizes{
	"full": {refs: []int{0, 10_000, 100_000}, big: 100_000, expired: 10_000, pins: 2000, oneByOne: 40, fetchRound: 10, rounds: 2,
		expiry: expirySizes{refs: 100_000, pins: 10_000, retention: 15 * time.Second}},
	"smoke": {refs: []int{0, 1000}, big: 2000, expired: 200, pins: 100, oneByOne: 5, fetchRound: 2, rounds: 1,
		expiry: expirySizes{refs: 2000, pins: 200, retention: 3 * time.Second}},
}

// benchPlan answers the sizes plans holds under the name benchEnv gives,
// and skips the test when benchEnv names none of them.
func benchPlan[S any](t *testing.T, plans map[string]S) S {
	t.Helper()
	plan, ok := plans[os.Getenv(benchEnv)]
	if !ok {
		t.Skipf("set %s=full (make bench) or smoke to run the benchmark", benchEnv)
	}
	return plan
}

// benchOnly skips the test when benchOnlyEnv names a part other than part.
func benchOnly(t *testing.T, part string) {
	t.Helper()
	if only := os.Getenv(benchOnlyEnv); only != "" && only != part {
		t.Skipf("%s=%s", benchOnlyEnv, only)
	}
}

// benchRow is one line of the report.
type benchRow struct {
	what, refkeeper, baseline, ratio, target, verdict string
}

func TestBench(t *testing.T) {
	plan := benchPlan(t, benchPlans)
	only := os.Getenv(benchOnlyEnv)
	if only != "" && only != "api" && only != "expiry" && only != "mirror" && only != "packcache" {
		t.Fatalf("%s=%q: want api, expiry, mirror, packcache or nothing", benchOnlyEnv, only)
	}
	if only == "mirror" || only == "packcache" {
		t.Skipf("%s=%s: TestBench%s only", benchOnlyEnv, only, map[string]string{"mirror": "Mirror", "packcache": "PackCache"}[only])
	}
	var rows []benchRow
	add := func(r benchRow) {
		rows = append(rows, r)
		t.Logf("%s: %s vs %s (%s) %s", r.what, r.refkeeper, r.baseline, r.ratio, r.verdict)
	}
	if only == "" || only == "api" {
		benchAPI(t, plan, add)
	}
	if only == "" || only == "expiry" {
		benchExpiry(t, plan.expiry, add)
	}

	name := os.Getenv(benchEnv)
	if only != "" {
		name += ", " + only + " only"
	}
	report := renderBench(name, rows)
	fmt.Print(report)
	out := filepath.Join("..", "bench-results")
	if err := os.MkdirAll(out, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(out, "latest.md"), []byte(report), 0o644)
	}
}

// benchPlace is a directory a benchmark runs in.
type benchPlace struct{ name, root string }

// benchPlaces answers a fresh directory on tmpfs (/dev/shm, where this
// machine has it) and one on disk, both removed when the test ends: lock
// files and fsyncs cost the disk most.
func benchPlaces(t *testing.T, prefix string) []benchPlace {
	var places []benchPlace
	if dir, err := os.MkdirTemp("/dev/shm", prefix); err != nil {
		t.Logf("skipping /dev/shm: %v", err)
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
		places = append(places, benchPlace{"/dev/shm", dir})
	}
	return append(places, benchPlace{"disk", t.TempDir()})
}

// benchAPI measures on an api-only server: adoption, sweeps, GC through
// POST /api/v1/gc, pins and fetches.
func benchAPI(t *testing.T, plan benchSizes, add func(benchRow)) {
	root := t.TempDir()
	r := testdata.StartRedis(t)
	rdb := r.Client(t)
	big, bigSHA := packedRepo(t, root, "bench/big", plan.big)
	// Request logs at warn: at a thousand requests a second the INFO lines
	// would measure the test's log buffer, not the service.
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--role", "api", "--retention", "1s",
		"--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	pid := srv.Cmd.Process.Pid
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
	// and one transaction. Every path gets a repository of its own with the
	// same packed refs, so none pays for loose refs another left behind; the
	// two paths take turns, plan.rounds each, and each keeps its best round,
	// so a noisy neighbour does not fall on one path only.
	redisPID := redisProcessID(t, rdb.Info(t.Context(), "server").Val())
	next := 10_000_000
	repoSeq := 0
	freshRepo := func(kind string, n int) (string, string, string) {
		repoSeq++
		name := fmt.Sprintf("%s/r%d-%d", kind, n, repoSeq)
		dir, sha := packedRepo(t, root, name, n)
		return dir, sha, strings.ReplaceAll(name, "/", "%2F")
	}
	for _, n := range plan.refs {
		floorDir, floorSHA, _ := freshRepo("floor", n)
		floorTime := timeGit(t, floorDir, updateLines("create", idRange(&next, plan.pins), floorSHA))
		for _, conc := range []int{1, 8} {
			var pins, git pinRun
			for range plan.rounds {
				dir, sha, _ := freshRepo("git", n)
				git = git.better(gitPerRef(t, dir, sha, idRange(&next, plan.pins), conc))
				_, sha, project := freshRepo("pins", n)
				pins = pins.better(pinLoad(t, client, srv, project, sha, idRange(&next, plan.pins), conc, pid, redisPID))
			}
			row := benchRow{
				what:      fmt.Sprintf("pin, %d refs, concurrency %d", n, conc),
				refkeeper: fmt.Sprintf("%.0f/s p50 %s p99 %s", pins.rate(), durMS(pct(pins.lat, 50)), durMS(pct(pins.lat, 99))),
				baseline:  fmt.Sprintf("process per ref %.0f/s p99 %s; 1 transaction %.0f/s", git.rate(), durMS(pct(git.lat, 99)), float64(plan.pins)/floorTime.Seconds()),
				ratio:     fmt.Sprintf("%.2fx", pins.rate()/git.rate()),
			}
			last := n == plan.refs[len(plan.refs)-1]
			if conc == 8 && last {
				row.target = "≥ 3x, p99 ≤ 20 ms"
				row.verdict = verdict(pins.rate() >= 3*git.rate() && pct(pins.lat, 99) <= 20*time.Millisecond)
			}
			add(row)
			if last {
				add(benchRow{
					what:      fmt.Sprintf("  CPU per pin, %d refs, concurrency %d", n, conc),
					refkeeper: pins.cpu.String(),
					baseline:  git.cpu.String(),
					ratio:     fmt.Sprintf("%.2fx of baseline", pins.cpu.total()/git.cpu.total()),
				})
			}
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

// pinRun is one measured round of pins: each call's latency, the wall time
// of the round, and the CPU it cost per pin.
type pinRun struct {
	lat   []time.Duration
	total time.Duration
	cpu   cpuPerPin
}

func (r pinRun) rate() float64 {
	if r.total == 0 {
		return 0
	}
	return float64(len(r.lat)) / r.total.Seconds()
}

// better keeps the faster of two rounds.
func (r pinRun) better(o pinRun) pinRun {
	if r.total == 0 || o.rate() > r.rate() {
		return o
	}
	return r
}

// cpuPerPin splits the CPU time of a round, per pin, by who spent it.
type cpuPerPin struct {
	parts []cpuPart
}

type cpuPart struct {
	who string
	d   time.Duration
}

func (c cpuPerPin) total() float64 {
	var sum time.Duration
	for _, p := range c.parts {
		sum += p.d
	}
	return float64(sum)
}

func (c cpuPerPin) String() string {
	var b strings.Builder
	for i, p := range c.parts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f µs", p.who, float64(p.d.Nanoseconds())/1000)
	}
	fmt.Fprintf(&b, " (total %.0f µs)", c.total()/1000)
	return b.String()
}

func pinLoad(t *testing.T, client *http.Client, srv *server, project, sha string, ids []int, conc, serverPID, redisPID int) pinRun {
	server0, redis0, client0 := processTreeCPU(t, serverPID), processTreeCPU(t, redisPID), ownCPU()
	start := time.Now()
	lat := parallel(conc, ids, func(id int) {
		benchPin(t, client, srv, project, id, sha)
	})
	total := time.Since(start)
	per := func(d time.Duration) time.Duration { return d / time.Duration(len(ids)) }
	server, redis, self := processTreeCPU(t, serverPID), processTreeCPU(t, redisPID), ownCPU()
	return pinRun{lat: lat, total: total, cpu: cpuPerPin{parts: []cpuPart{
		{"server", per(server.self - server0.self)},
		{"its git", per(server.children - server0.children)},
		{"Redis", per(redis.self - redis0.self)},
		{"HTTP client", per(self.self - client0.self)},
	}}}
}

// benchPin pins one pipeline and checks the answer is a new pin at sha. It
// decodes only what it checks: the client shares the two cores with the
// server, so a generic decode of every answer would be charged to refkeeper.
func benchPin(t *testing.T, client *http.Client, srv *server, project string, id int, sha string) {
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/projects/%s/pipelines/%d/ref", srv.Base, project, id), strings.NewReader(`{"sha":"`+sha+`"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("pin %d: %v", id, err)
		return
	}
	defer resp.Body.Close()
	var pin struct {
		SHA string `json:"sha"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pin); err != nil || resp.StatusCode != http.StatusCreated || pin.SHA != sha {
		t.Errorf("pin %d: status %d, sha %q, decode error %v; want 201 at %s", id, resp.StatusCode, pin.SHA, err, sha)
	}
}

func gitPerRef(t *testing.T, dir, sha string, ids []int, conc int) pinRun {
	before := ownCPU()
	start := time.Now()
	lat := parallel(conc, ids, func(id int) {
		gitRun(t, dir, "", "update-ref", fmt.Sprintf("refs/pipelines/%d", id), sha, strings.Repeat("0", 40))
	})
	total := time.Since(start)
	after := ownCPU()
	n := time.Duration(len(ids))
	return pinRun{lat: lat, total: total, cpu: cpuPerPin{parts: []cpuPart{
		{"git", (after.children - before.children) / n},
		{"spawning it", (after.self - before.self) / n},
	}}}
}

// treeCPU is the CPU time of a process and of its children, the exited
// (waited for) and the running ones.
type treeCPU struct {
	self, children time.Duration
}

// processTreeCPU reads /proc: the process's own time, what its waited-for
// children used, and what its running children used so far. Between two
// readings, a child that ended moves from the last part to the second, so
// differences stay right.
func processTreeCPU(t *testing.T, pid int) treeCPU {
	self, waited, err := procStat(pid)
	if err != nil {
		t.Fatalf("reading CPU of %d: %v", pid, err)
	}
	out := treeCPU{self: self, children: waited}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, path := range tasks {
		data, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(data)) {
			child, _ := strconv.Atoi(f)
			if cself, cwaited, err := procStat(child); err == nil {
				out.children += cself + cwaited
			}
		}
	}
	return out
}

// procStat reads a process's user+system time and its waited-for
// children's from /proc/<pid>/stat (in clock ticks of 10 ms).
func procStat(pid int) (self, children time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	if len(fields) < 15 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(fields[i], 10, 64)
		return time.Duration(n) * 10 * time.Millisecond
	}
	return tick(11) + tick(12), tick(13) + tick(14), nil
}

// ownCPU is this test process's CPU time and its waited-for children's.
func ownCPU() treeCPU {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	sum := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return treeCPU{self: sum(self), children: sum(children)}
}

func redisProcessID(t *testing.T, info string) int {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ := strconv.Atoi(v)
			return pid
		}
	}
	t.Fatalf("no process_id in INFO")
	return 0
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

func timeFetch(t *testing.T, srv *server, project string, id, rounds int) time.Duration {
	var times []time.Duration
	for range rounds {
		work := t.TempDir()
		if out, err := testdata.RunnerGit(t, work, "init", "-q", "."); err != nil {
			t.Fatal(out)
		}
		start := time.Now()
		out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken, "-c", "protocol.version=2",
			"fetch", "-q", "--depth=1", srv.Base+"/git/"+project+".git", fmt.Sprintf("+refs/pipelines/%d:refs/pipelines/%d", id, id))
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

func benchCall(t *testing.T, client *http.Client, srv *server, method, path, body string) map[string]any {
	req, _ := http.NewRequest(method, srv.Base+path, strings.NewReader(body))
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
