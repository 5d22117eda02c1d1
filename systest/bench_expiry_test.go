package systest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// expirySizes are the sizes of the expiry measurement.
type expirySizes struct {
	refs      int           // pipeline refs in the repository, the pins' included
	pins      int           // pins finished together
	retention time.Duration // --retention: longer than finishing them all takes
}

// Settings of the expiry measurement that do not change with the plan.
const (
	// expiryGCInterval is the server's --gc-interval: a periodic sweep
	// deletes what is due too, so the target allows one.
	expiryGCInterval = 30 * time.Second
	// expiryWaitCap bounds the wait for the last ref; what is left then is
	// reported, not waited for.
	expiryWaitCap = 120 * time.Second
	// expiryPoll is how often the refs on disk are counted.
	expiryPoll = 100 * time.Millisecond
)

// benchExpiry measures the deletion path production takes: `refkeeper serve`
// with its default --role all, a repository of sizes.refs packed pipeline
// refs of which sizes.pins are pinned through the API and finished together;
// their tasks fire at expires_at. Measured: from the last expires_at until
// the last of those refs is gone from disk, against one `update-ref --stdin`
// transaction deleting the same refs in a copy of the repository (the
// floor). Once on tmpfs and once on disk, since lock files cost the disk
// most.
func benchExpiry(t *testing.T, sizes expirySizes, add func(benchRow)) {
	for _, fs := range []struct{ name, dir string }{{"tmpfs", "/dev/shm"}, {"disk", os.TempDir()}} {
		what := fmt.Sprintf("expiry by tasks (--role all), %d pins due together in %d refs, %s", sizes.pins, sizes.refs, fs.name)
		root, err := os.MkdirTemp(fs.dir, "refkeeper-bench-")
		if err != nil {
			add(benchRow{what: what, refkeeper: "not run: " + err.Error()})
			continue
		}
		t.Cleanup(func() { os.RemoveAll(root) })
		for _, r := range expiryRun(t, root, sizes) {
			r.what = strings.ReplaceAll(r.what, "%what", what)
			add(r)
		}
	}
}

func expiryRun(t *testing.T, root string, sizes expirySizes) []benchRow {
	background := sizes.refs - sizes.pins
	dir, sha := packedRepo(t, root, "bench/expiry", background)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--retention", sizes.retention.String(),
		"--gc-interval", expiryGCInterval.String(), "--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	// Stopped before the next measurement, so that one has the machine to itself.
	defer srv.Stop(t)
	client := benchClient(16)
	const project = "bench%2Fexpiry"

	// The other pipelines' refs get records, as after any sweep, so the
	// sweeps during the measurement do not adopt them.
	benchCall(t, client, srv, "POST", "/api/v1/gc", "")
	ids := make([]int, sizes.pins)
	for i := range ids {
		ids[i] = background + i + 1
	}
	parallel(8, ids, func(id int) { benchPin(t, client, srv, project, id, sha) })
	expires := make([]time.Time, len(ids))
	byID := make(map[int]int, len(ids))
	for i, id := range ids {
		byID[id] = i
	}
	finishStart := time.Now()
	parallel(8, ids, func(id int) {
		pin := benchCall(t, client, srv, "POST", fmt.Sprintf("/api/v1/projects/%s/pipelines/%d/finish", project, id), "")
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(pin["expires_at"]))
		if err != nil {
			t.Errorf("pin %d: expires_at %v: %v", id, pin["expires_at"], err)
		}
		expires[byID[id]] = at
	})
	finishing := time.Since(finishStart)
	first, last := expires[0], expires[0]
	for _, at := range expires {
		first, last = minTime(first, at), maxTime(last, at)
	}

	watch := newRefWatch(dir, ids[0], len(ids))
	time.Sleep(time.Until(last)) // nothing is measured before the last expiry
	leftAtLast := watch.left(t)
	var took time.Duration
	left := leftAtLast
	nextLog := time.Now().Add(10 * time.Second)
	for left > 0 && time.Since(last) < expiryWaitCap {
		time.Sleep(expiryPoll)
		left = watch.left(t)
		if time.Now().After(nextLog) {
			t.Logf("expiry: %d of %d refs left %v after the last expiry", left, len(ids), time.Since(last).Round(time.Second))
			nextLog = nextLog.Add(10 * time.Second)
		}
	}
	took = time.Since(last)
	// git is the judge; deletions may still be running, so its count can
	// only be lower than the last one taken.
	if gitLeft := gitCountRefs(t, dir, ids); gitLeft > left || (left == 0 && gitLeft != 0) {
		t.Errorf("counting refs on disk found %d left, git for-each-ref %d", left, gitLeft)
	}

	floorDir, _ := packedRepoWithSHA(t, root, "floor/expiry", sizes.refs, sha, dir)
	floor := timeGit(t, floorDir, updateLines("delete", ids, sha))

	target := time.Duration(1.5*float64(floor)) + expiryGCInterval
	result, times := dur(took), ratio(took, floor)
	if left > 0 {
		result = fmt.Sprintf("> %s: %d of %d left", dur(took), left, len(ids))
		times = "> " + times
	}
	return []benchRow{
		{
			what:      "%what",
			refkeeper: result,
			baseline:  "1 transaction " + dur(floor),
			ratio:     times,
			target:    fmt.Sprintf("≤ 1.5x floor + one GC interval (--gc-interval %s) = %s", expiryGCInterval, dur(target)),
			verdict:   verdict(left == 0 && took <= target),
		},
		{
			what: "  spread of expires_at; refs gone by the last one",
			refkeeper: fmt.Sprintf("%s (finishing took %s, --retention %s); %d of %d", dur(last.Sub(first)), dur(finishing),
				sizes.retention, len(ids)-leftAtLast, len(ids)),
		},
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// refWatch counts which of a range of pipeline refs a repository still
// has, the way git resolves them: a loose file, or else a line of
// packed-refs. It reads packed-refs again only when the file changed (git
// replaces it with a rename) and scans it without building strings, so
// polling takes little CPU from the server it measures.
type refWatch struct {
	dir    string
	lo, n  int    // the refs are refs/pipelines/lo .. lo+n-1
	packed []bool // by id-lo: in packed-refs when last read
	stamp  string // inode, size and mtime of that packed-refs
}

func newRefWatch(dir string, lo, n int) *refWatch {
	return &refWatch{dir: dir, lo: lo, n: n, packed: make([]bool, n)}
}

// index answers the position of refs/pipelines/<digits> in the range.
func (w *refWatch) index(digits []byte) (int, bool) {
	id := 0
	for _, c := range digits {
		if c < '0' || c > '9' || id > 1<<40 {
			return 0, false
		}
		id = id*10 + int(c-'0')
	}
	i := id - w.lo
	return i, len(digits) > 0 && i >= 0 && i < w.n
}

func (w *refWatch) left(t *testing.T) int {
	path := filepath.Join(w.dir, "packed-refs")
	info, err := os.Stat(path)
	switch {
	case err == nil:
		st, _ := info.Sys().(*syscall.Stat_t)
		stamp := fmt.Sprintf("%d %d %d", st.Ino, info.Size(), info.ModTime().UnixNano())
		if stamp == w.stamp {
			break
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("reading packed-refs: %v", err)
		}
		clear(w.packed)
		prefix := []byte(" refs/pipelines/")
		for len(data) > 0 {
			line := data
			if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
				line, data = data[:nl], data[nl+1:]
			} else {
				data = nil
			}
			if len(line) > 40 && bytes.HasPrefix(line[40:], prefix) {
				if i, ok := w.index(line[40+len(prefix):]); ok {
					w.packed[i] = true
				}
			}
		}
		w.stamp = stamp
	case os.IsNotExist(err):
		clear(w.packed)
		w.stamp = ""
	default:
		t.Fatalf("stat packed-refs: %v", err)
	}
	present := slices.Clone(w.packed)
	entries, err := os.ReadDir(filepath.Join(w.dir, "refs", "pipelines"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("listing loose refs: %v", err)
	}
	for _, e := range entries {
		if i, ok := w.index([]byte(e.Name())); ok {
			present[i] = true
		}
	}
	n := 0
	for _, p := range present {
		if p {
			n++
		}
	}
	return n
}

// gitCountRefs asks git how many of the pipeline refs ids are left.
func gitCountRefs(t *testing.T, dir string, ids []int) int {
	out, err := exec.Command("git", "--git-dir", dir, "for-each-ref", "--format=%(refname)", "refs/pipelines/").Output()
	if err != nil {
		t.Fatalf("git for-each-ref: %v", err)
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[fmt.Sprintf("refs/pipelines/%d", id)] = true
	}
	n := 0
	for _, name := range strings.Fields(string(out)) {
		if want[name] {
			n++
		}
	}
	return n
}

// The benchmark's count of refs left agrees with git's as refs move between
// loose files and packed-refs and are deleted from either.
func TestRefWatchCountsLikeGit(t *testing.T) {
	g := testdata.NewBareRepo(t, t.TempDir(), "bench/watch")
	sha := g.Commit(t, "main", map[string]string{"README": "watch\n"}, "watch")
	g.PipelineRefs(t, 1, 30, sha) // 1..30, of which 11..30 are watched
	g.PackRefs(t)
	g.PipelineRefs(t, 31, 10, sha) // 31..40 loose
	ids := make([]int, 30)
	for i := range ids {
		ids[i] = 11 + i
	}
	w := newRefWatch(g.Dir, 11, 30)
	check := func(when string) {
		t.Helper()
		if got, want := w.left(t), gitCountRefs(t, g.Dir, ids); got != want {
			t.Fatalf("%s: watch counts %d, git %d", when, got, want)
		}
	}
	check("packed and loose")
	g.Git(t, "update-ref", "-d", "refs/pipelines/12")
	g.Git(t, "update-ref", "-d", "refs/pipelines/35")
	check("one packed and one loose deleted")
	g.PackRefs(t)
	check("all packed")
	rest := slices.DeleteFunc(slices.Clone(ids), func(id int) bool { return id == 12 || id == 35 })
	gitRun(t, g.Dir, updateLines("delete", rest, sha), "update-ref", "--stdin")
	check("all deleted")
	if w.left(t) != 0 {
		t.Fatal("refs left after deleting them all")
	}
}
