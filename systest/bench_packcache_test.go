package systest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// packCacheBenchSizes are a pack cache benchmark's sizes.
type packCacheBenchSizes struct {
	files, fileBytes int // the pinned commit's files and their size
	concurrent       int // runners fetching the pin at once
	singles          int // single fetches per path, the median counts
	refs             int // refs of the scoped v0 fetch's repository
}

var packCacheBenchPlans = map[string]packCacheBenchSizes{
	"full":  {files: 10_000, fileBytes: 6400, concurrent: 32, singles: 3, refs: 100_000},
	"smoke": {files: 200, fileBytes: 2000, concurrent: 4, singles: 1, refs: 1000},
}

// TestBenchPackCache measures a pipeline's fan-out: many runners fetching
// one pinned commit (depth 1, fresh repositories, the pin's fetch token)
// at once, from a server with the pack cache and one with
// --pack-cache-dir off, on tmpfs and on disk. The commit was pushed and
// not repacked, as a pipeline's is. Server CPU is the server process's
// and its children's (utime, stime, cutime, cstime from /proc). Also one
// fetch alone that misses the cache (its entries expire at once) against
// one without it, with a fetch token (the response cache) and with an API
// token (the hook), and a scoped protocol v0 fetch with many refs in the
// repository against one ref, the first of a pin and a repeated one. It
// asserts that every fetch got the commit; it asserts no timings.
func TestBenchPackCache(t *testing.T) {
	plan := benchPlan(t, packCacheBenchPlans)
	benchOnly(t, "packcache")
	var rows []benchRow
	for _, place := range benchPlaces(t, "refkeeper-bench-packcache-") {
		rows = append(rows, benchPackCacheOn(t, place, plan)...)
	}
	fmt.Print(renderBench(os.Getenv(benchEnv), rows))
}

// fetchCost is what fetches cost the server, and how long they took.
type fetchCost struct {
	cpu, wall time.Duration
}

func (c fetchCost) String() string {
	return fmt.Sprintf("CPU %s, wall %s", dur(c.cpu), dur(c.wall))
}

func benchPackCacheOn(t *testing.T, place benchPlace, plan packCacheBenchSizes) []benchRow {
	root := filepath.Join(place.root, "repos")
	r := testdata.StartRedis(t)
	sha := pushedBigCommit(t, root, "bench/fanout", plan.files, plan.fileBytes, true)
	packedSHA := pushedBigCommit(t, root, "bench/fanoutpack", plan.files, plan.fileBytes, false)
	// --role api: the hook and the caches live in the API role; the
	// workers' housekeeping (git gc --auto) would repack the commit this
	// bench measures unpacked, as a pipeline's freshly pushed commit is.
	// --git-timeout: 32 uncached pack-objects at once on a busy machine
	// take minutes; the default would cut the baseline short.
	common := []string{"--repos", root, "--redis", r.URL(), "--role", "api", "--log-level", "warn", "--git-timeout", "30m",
		"--rate-limit-address", "0", "--rate-limit-token", "0"}
	on := startServer(t, append(common, "--pack-cache-dir", filepath.Join(place.root, "cache-on"))...)
	off := startServer(t, append(common, "--pack-cache-dir", "off")...)
	// Its entries expire at once: every fetch is a miss, through the hook.
	miss := startServer(t, append(common, "--pack-cache-dir", filepath.Join(place.root, "cache-miss"), "--pack-cache-max-age", "1ns")...)

	pin := func(srv *server, project string, id int, sha string) (url, token string) {
		status, body := srv.call(t, "PUT", fmt.Sprintf("/api/v1/projects/%s/pipelines/%d/ref", strings.ReplaceAll(project, "/", "%2F"), id), `{"sha":"`+sha+`"}`)
		if status != 200 && status != 201 {
			t.Fatalf("pin: %d %v", status, body)
		}
		return srv.Base + "/git/" + project + ".git", body["fetch_token"].(string)
	}
	// fetches runs n runners' fetches of the pin at once and answers what
	// they cost the server.
	fetches := func(srv *server, project, sha string, id, n int, proto string) fetchCost {
		url, token := pin(srv, project, id, sha)
		return measure(t, srv, func() {
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() { runnerFetch(t, url, token, id, sha, proto) })
			}
			wg.Wait()
		})
	}
	var rows []benchRow
	for _, repo := range []struct{ project, sha, kind, target string }{
		{"bench/fanout", sha, "pushed, loose objects", "CPU ≤ 0.2x, wall ≤ 0.5x"},
		{"bench/fanoutpack", packedSHA, "pushed, the push's pack kept", ""},
	} {
		fanOff := fetches(off, repo.project, repo.sha, 1, plan.concurrent, "2")
		fanOn := fetches(on, repo.project, repo.sha, 1, plan.concurrent, "2")
		row := benchRow{fmt.Sprintf("%s: %d fetches at once, depth 1, %d files (%d MB), %s", place.name, plan.concurrent, plan.files, plan.files*plan.fileBytes>>20, repo.kind),
			fanOn.String(), "cache off: " + fanOff.String(), fmt.Sprintf("CPU %s, wall %s", ratio(fanOn.cpu, fanOff.cpu), ratio(fanOn.wall, fanOff.wall)), "", ""}
		if repo.target != "" {
			row.target, row.verdict = repo.target, verdict(5*fanOn.cpu <= fanOff.cpu && 2*fanOn.wall <= fanOff.wall)
		}
		rows = append(rows, row)
	}

	// One fetch alone, a cache miss (the miss server's entries expire at
	// once), against one with the cache off: a pin's fetch token (the
	// response cache's miss path: one http-backend, its answer written to
	// the entry as it is sent) and an API token (through the hook).
	apiFetch := func(srv *server, project, sha string, id int) fetchCost {
		url, _ := pin(srv, project, id, sha)
		return measure(t, srv, func() { runnerFetch(t, url, testToken, id, sha, "2") })
	}
	var scopedOff, scopedMiss, apiOff, apiMiss []fetchCost
	for i := range plan.singles {
		scopedOff = append(scopedOff, fetches(off, "bench/fanout", sha, 100+i, 1, "2"))
		scopedMiss = append(scopedMiss, fetches(miss, "bench/fanout", sha, 100+i, 1, "2"))
		apiOff = append(apiOff, apiFetch(off, "bench/fanout", sha, 200+i))
		apiMiss = append(apiMiss, apiFetch(miss, "bench/fanout", sha, 200+i))
	}
	for _, single := range []struct {
		name      string
		off, miss []fetchCost
	}{
		{"one scoped fetch, a cache miss", scopedOff, scopedMiss},
		{"one API-token fetch, a cache miss (through the hook)", apiOff, apiMiss},
	} {
		so, sm := medianCost(single.off), medianCost(single.miss)
		rows = append(rows, benchRow{fmt.Sprintf("%s: %s", place.name, single.name),
			sm.String(), "cache off: " + so.String(), fmt.Sprintf("CPU %s, wall %s", ratio(sm.cpu, so.cpu), ratio(sm.wall, so.wall)),
			"wall ≤ 1.1x", verdict(10*sm.wall <= 11*so.wall)})
	}

	// A scoped v0 fetch of one pin among many refs, against a repository
	// with one ref: hideRefs makes upload-pack read every ref. The first
	// fetch of a pin (a miss: the miss server) pays that walk; a repeated
	// one (a hit of the response cache) runs no git at all.
	_, manySHA := packedRepo(t, root, "bench/manyrefs", plan.refs)
	_, oneSHA := packedRepo(t, root, "bench/oneref", 0)
	scoped := func(srv *server, project, sha string) time.Duration {
		url, token := pin(srv, project, plan.refs+1, sha)
		runnerFetch(t, url, token, plan.refs+1, sha, "0") // warm: the cache's entries, the page cache
		var times []time.Duration
		for range 5 {
			start := time.Now()
			runnerFetch(t, url, token, plan.refs+1, sha, "0")
			times = append(times, time.Since(start))
		}
		return pct(times, 50)
	}
	for _, c := range []struct {
		srv  *server
		name string
	}{{miss, "the first fetch of a pin (a miss)"}, {on, "a repeated fetch (a hit)"}} {
		many, one := scoped(c.srv, "bench/manyrefs", manySHA), scoped(c.srv, "bench/oneref", oneSHA)
		rows = append(rows, benchRow{fmt.Sprintf("%s: scoped fetch (protocol v0), %d refs, %s", place.name, plan.refs, c.name),
			dur(many), "1 ref " + dur(one), ratio(many, one), "≤ 1.3x", verdict(10*many <= 13*one)})
	}
	return rows
}

// measure runs fn and answers the server's CPU (its own and its
// children's) and the wall time it took.
func measure(t *testing.T, srv *server, fn func()) fetchCost {
	pid := srv.Cmd.Process.Pid
	before := processTreeCPU(t, pid)
	start := time.Now()
	fn()
	wall := time.Since(start)
	after := processTreeCPU(t, pid)
	return fetchCost{cpu: after.self + after.children - before.self - before.children, wall: wall}
}

func medianCost(cs []fetchCost) fetchCost {
	var cpu, wall []time.Duration
	for _, c := range cs {
		cpu, wall = append(cpu, c.cpu), append(wall, c.wall)
	}
	return fetchCost{cpu: pct(cpu, 50), wall: pct(wall, 50)}
}

// runnerFetch is a runner's fetch: a fresh repository, depth 1, the pin's
// fetch token; the pinned commit must arrive.
func runnerFetch(t *testing.T, url, token string, id int, sha, proto string) {
	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q", "."); err != nil {
		t.Error(out)
		return
	}
	ref := fmt.Sprintf("refs/pipelines/%d", id)
	out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+token, "-c", "protocol.version="+proto,
		"fetch", "-q", "--no-tags", "--depth=1", url, "+"+ref+":"+ref)
	if err != nil {
		t.Errorf("fetch: %v\n%s", err, out)
		return
	}
	if got, _ := testdata.RunnerGit(t, work, "rev-parse", ref); strings.TrimSpace(got) != sha {
		t.Errorf("fetched %s as %q, want %s", ref, got, sha)
	}
	os.RemoveAll(work) // the packs of 32 runners would fill tmpfs
}

// pushedBigCommit builds a commit of files random files of size bytes (in
// a scratch repository, with git fast-import) and pushes it into the
// project's bare repository, where it stays as the push left it, not
// repacked: loose objects (as pushes of fewer objects than
// receive.unpackLimit leave them, and as the pushes that build a
// pipeline's commit one by one do), or the one pack the push kept.
func pushedBigCommit(t *testing.T, root, project string, files, size int, loose bool) string {
	bare := testdata.NewBareRepo(t, root, project)
	// No automatic gc after the push: it would pack the objects while
	// the benchmark runs.
	bare.Git(t, "config", "receive.autogc", "false")
	bare.Git(t, "config", "gc.auto", "0")
	if loose {
		bare.Git(t, "config", "receive.unpackLimit", "1000000")
	}
	scratch := filepath.Join(t.TempDir(), "scratch.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", scratch).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	cmd := exec.Command("git", "--git-dir", scratch, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.StderrPipe(); err == nil {
		go func() { _, _ = bufio.NewReader(out).WriteTo(os.Stderr) }()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, size*3/4)
	for i := range files {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		data := base64.StdEncoding.EncodeToString(raw)
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", i+1, len(data), data)
	}
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 6\nbench\n")
	for i := range files {
		fmt.Fprintf(w, "M 100644 :%d dir%02d/file%05d.txt\n", i+1, i%100, i)
	}
	fmt.Fprintln(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("git fast-import: %v", err)
	}
	if out, err := exec.Command("git", "--git-dir", scratch, "push", "-q", bare.Dir, "main:refs/heads/main").CombinedOutput(); err != nil {
		t.Fatalf("git push: %v\n%s", err, out)
	}
	return strings.TrimSpace(bare.Git(t, "rev-parse", "refs/heads/main"))
}
