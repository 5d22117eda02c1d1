package mirrors

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

func packCount(t *testing.T, dir string) int {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", dir, "count-objects", "-v").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "packs: "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// packedMirror makes the mirror name under dir, fetched from a local
// upstream several times, each fetch kept as its own pack.
func packedMirror(t *testing.T, dir string, name gitops.ProjectName, fetches int) string {
	t.Helper()
	up := testdata.NewBareRepo(t, t.TempDir(), "up")
	m := testdata.NewBareRepo(t, dir, string(name))
	m.Git(t, "config", "refkeeper.upstream", "file://"+up.Dir)
	m.Git(t, "config", "refkeeper.host", "generic")
	root := &gitops.Root{Dir: dir}
	t.Cleanup(root.Close)
	f := &gitops.Fetcher{Root: root}
	for i := 0; i < fetches; i++ {
		files := map[string]string{}
		for j := 0; j < 110; j++ {
			files[fmt.Sprintf("f%d.txt", j)] = fmt.Sprintf("%d %d\n", i, j)
		}
		up.Commit(t, "main", files, fmt.Sprintf("round %d", i))
		if err := f.FetchMirror(context.Background(), name, gitops.Upstream{URL: "file://" + up.Dir},
			[]string{"+refs/heads/main:refs/heads/main"}); err != nil {
			t.Fatal(err)
		}
	}
	return m.Dir
}

func TestHousekeepingRunsOncePerMirrorAcrossReplicasAndSkipsLocalProjects(t *testing.T) {
	testdata.GitAvailable(t)
	dir := t.TempDir()
	mirror := gitops.ProjectName("mirrors/app")
	mirrorDir := packedMirror(t, dir, mirror, 5)
	local := testdata.NewBareRepo(t, dir, "group/local")
	for i := 0; i < 4; i++ {
		local.Commit(t, "main", map[string]string{"a.txt": strconv.Itoa(i)}, "c")
		local.Git(t, "repack", "-q")
	}
	localPacks := packCount(t, local.Dir)
	if packCount(t, mirrorDir) < 5 {
		t.Fatalf("the mirror has %d packs before, want 5", packCount(t, mirrorDir))
	}

	store := &refs.Store{Client: testdata.StartRedis(t).Client(t)}
	reg := prometheus.NewRegistry()
	metrics := NewHousekeepingMetrics(reg, &gitops.Root{Dir: dir})
	replica := func() *Housekeeping {
		root := &gitops.Root{Dir: dir}
		t.Cleanup(root.Close)
		return &Housekeeping{Repos: root, Store: store, Interval: time.Hour, Metrics: metrics,
			Options: gitops.HousekeepingOptions{Packs: 2}}
	}
	a, b := replica(), replica()
	ctx := context.Background()

	// Eight callers on two replicas at once: one runs it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := 0
	for i := 0; i < 8; i++ {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			did, err := h.Run(ctx, mirror)
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			if did {
				mu.Lock()
				ran++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ran != 1 {
		t.Errorf("%d of 8 concurrent callers on two replicas housekept the mirror, want 1", ran)
	}
	if n := packCount(t, mirrorDir); n != 1 {
		t.Errorf("the mirror has %d packs after housekeeping, want 1", n)
	}
	if out, err := exec.Command("git", "--git-dir", mirrorDir, "fsck", "--connectivity-only").CombinedOutput(); err != nil {
		t.Errorf("fsck: %v\n%s", err, out)
	}

	// Within the interval: nobody runs it again; the local project is
	// never touched.
	res, err := b.RunAll(ctx)
	if err != nil || res.Ran != 0 || res.Skipped != 1 || res.Failed != 0 {
		t.Errorf("RunAll within the interval = %+v %v, want one mirror skipped", res, err)
	}
	if n := packCount(t, local.Dir); n != localPacks {
		t.Errorf("the local project's packs went from %d to %d", localPacks, n)
	}
	if _, err := a.Run(ctx, "group/local"); !errors.As(err, new(*gitops.NotMirrorError)) {
		t.Errorf("Run on a local project = %v, want NotMirrorError", err)
	}
	if n := packCount(t, local.Dir); n != localPacks {
		t.Errorf("the local project's packs went from %d to %d", localPacks, n)
	}

	// The metrics: the mirror's real size and last fetch, no local series.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			key := fam.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch {
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			}
		}
	}
	out, err := exec.Command("sh", "-c", "find "+mirrorDir+"/objects -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'").Output()
	if err != nil {
		t.Fatal(err)
	}
	wantSize, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if size := got["refkeeper_mirror_size_bytes{mirrors/app}"]; size != wantSize || size == 0 {
		t.Errorf("refkeeper_mirror_size_bytes = %v, want %v", size, wantSize)
	}
	if ts := got["refkeeper_mirror_last_fetch_timestamp_seconds{mirrors/app}"]; ts < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("refkeeper_mirror_last_fetch_timestamp_seconds = %v, want the last fetch's time", ts)
	}
	for key := range got {
		if strings.Contains(key, "group/local") {
			t.Errorf("a local project has a mirror series: %s", key)
		}
	}
	if got["refkeeper_mirror_housekeeping_runs_total"] != 1 || got["refkeeper_mirror_housekeeping_failures_total"] != 0 {
		t.Errorf("runs %v, failures %v; want 1 and 0 (the mirror once; a local project is no run)",
			got["refkeeper_mirror_housekeeping_runs_total"], got["refkeeper_mirror_housekeeping_failures_total"])
	}
}
