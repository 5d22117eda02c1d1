package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	srv := startProcess(t, "--repos", root, "--redis", r.URL(), "--retention", sizes.retention.String(),
		"--gc-interval", expiryGCInterval.String(), "--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	defer stopProcess(t, srv)
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

	watch := newRefWatch(dir, ids)
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
	if gitLeft := gitCountRefs(t, dir, ids); gitLeft != left {
		t.Errorf("counting refs on disk found %d left, git for-each-ref %d", left, gitLeft)
	}

	floorDir, _ := packedRepoWithSHA(t, root, "floor/expiry", sizes.refs, sha, dir)
	floor := timeGit(t, floorDir, updateLines("delete", ids, sha))

	target := time.Duration(1.5*float64(floor)) + expiryGCInterval
	result := dur(took)
	if left > 0 {
		result = fmt.Sprintf("> %s: %d of %d left", dur(took), left, len(ids))
	}
	return []benchRow{
		{
			what:      "%what",
			refkeeper: result,
			baseline:  "1 transaction " + dur(floor),
			ratio:     ratio(took, floor),
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

// stopProcess stops a process server before the test ends (SIGTERM, exit 0
// checked), so the next measurement has the machine to itself.
func stopProcess(tb testing.TB, s *processServer) {
	tb.Helper()
	s.terminate(tb)
	s.done <- -1 // the cleanup's terminate sees it is gone
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

// refWatch counts which of a set of pipeline refs a repository still has,
// the way git resolves them: a loose file, or else a line of packed-refs.
// It reads packed-refs again only when the file changed (git replaces it
// with a rename), so polling costs the server little CPU.
type refWatch struct {
	dir    string
	want   map[string]bool
	packed map[string]bool // wanted refs in packed-refs when last read
	stamp  string          // inode, size and mtime of that packed-refs
}

func newRefWatch(dir string, ids []int) *refWatch {
	w := &refWatch{dir: dir, want: make(map[string]bool, len(ids))}
	for _, id := range ids {
		w.want[strconv.Itoa(id)] = true
	}
	return w
}

func (w *refWatch) left(t *testing.T) int {
	path := filepath.Join(w.dir, "packed-refs")
	if info, err := os.Stat(path); err == nil {
		st, _ := info.Sys().(*syscall.Stat_t)
		stamp := fmt.Sprintf("%d %d %d", st.Ino, info.Size(), info.ModTime().UnixNano())
		if stamp != w.stamp {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading packed-refs: %v", err)
			}
			w.packed = map[string]bool{}
			for _, line := range strings.Split(string(data), "\n") {
				if id, ok := strings.CutPrefix(line[min(len(line), 41):], "refs/pipelines/"); ok && w.want[id] {
					w.packed[id] = true
				}
			}
			w.stamp = stamp
		}
	} else if os.IsNotExist(err) {
		w.packed, w.stamp = nil, ""
	} else {
		t.Fatalf("stat packed-refs: %v", err)
	}
	present := make(map[string]bool, len(w.packed))
	for id := range w.packed {
		present[id] = true
	}
	entries, err := os.ReadDir(filepath.Join(w.dir, "refs", "pipelines"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("listing loose refs: %v", err)
	}
	for _, e := range entries {
		if w.want[e.Name()] {
			present[e.Name()] = true
		}
	}
	return len(present)
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
