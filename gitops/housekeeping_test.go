package gitops

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// countObjects is `git count-objects -v` of a repository: loose objects
// ("count") and packs ("packs").
func countObjects(t *testing.T, dir string) (loose, packs int) {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", dir, "count-objects", "-v").Output()
	if err != nil {
		t.Fatalf("count-objects: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.Atoi(v)
		switch k {
		case "count":
			loose = n
		case "packs":
			packs = n
		}
	}
	return loose, packs
}

// bigFiles makes n files of distinct content, so a commit of them is more
// objects than fetch.unpackLimit (100): its fetch is kept as a pack.
func bigFiles(round, n int) map[string]string {
	files := make(map[string]string, n)
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("f%03d.txt", i)] = fmt.Sprintf("round %d file %d\n", round, i)
	}
	return files
}

// fetchedMirror is a mirror in place of a local upstream repository (file
// URL), after its first fetch.
func fetchedMirror(t *testing.T) (root *Root, name ProjectName, up *testdata.Repo, dir string) {
	t.Helper()
	testdata.GitAvailable(t)
	up = testdata.NewBareRepo(t, t.TempDir(), "up")
	up.Commit(t, "main", map[string]string{"a.txt": "one\n"}, "first")
	root = &Root{Dir: t.TempDir()}
	t.Cleanup(root.Close)
	name = "mirrors/app"
	ctx := context.Background()
	if _, err := root.Stage(ctx, name, MirrorConfig{Upstream: "file://" + up.Dir, Host: "github"}); err != nil {
		t.Fatal(err)
	}
	if err := root.FetchStaged(ctx, name, Upstream{URL: "file://" + up.Dir}, CloneRefspecs()); err != nil {
		t.Fatal(err)
	}
	if err := root.Publish(name); err != nil {
		t.Fatal(err)
	}
	dir, err := root.RepoPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return root, name, up, dir
}

func TestHousekeepingPacksAMirrorAndKeepsEveryPinsObjects(t *testing.T) {
	root, name, up, dir := fetchedMirror(t)
	ctx := context.Background()
	src := Upstream{URL: "file://" + up.Dir}
	main := "+refs/heads/main:refs/heads/main"
	// Fetches of many objects are kept as packs, of few as loose objects.
	var pinned []string
	for round := 0; round < 6; round++ {
		up.Commit(t, "main", bigFiles(round, 120), fmt.Sprintf("big %d", round))
		if err := root.fetch(ctx, dir, src, []string{main}, turnWatch{}); err != nil {
			t.Fatal(err)
		}
		pinned = append(pinned, refAt(t, dir, "refs/heads/main"))
		up.Commit(t, "main", map[string]string{"small.txt": fmt.Sprintf("%d\n", round)}, fmt.Sprintf("small %d", round))
		if err := root.fetch(ctx, dir, src, []string{main}, turnWatch{}); err != nil {
			t.Fatal(err)
		}
	}
	// A commit fetched by SHA for a pin being made right now: no ref
	// reaches it yet (the branch that had it is gone upstream too).
	lone := up.Commit(t, "side", map[string]string{"side.txt": "only here\n"}, "side")
	if err := root.fetch(ctx, dir, src, []string{lone}, turnWatch{}); err != nil {
		t.Fatal(err)
	}
	up.Git(t, "update-ref", "-d", "refs/heads/side")
	// Pipeline refs at older commits, which main still reaches, and one at
	// a commit that only the pipeline ref reaches (its branch was forced
	// away upstream after the pin).
	for i, sha := range pinned {
		exec.Command("git", "--git-dir", dir, "update-ref", fmt.Sprintf("refs/pipelines/%d", i+1), sha).Run()
	}
	looseBefore, packsBefore := countObjects(t, dir)
	if looseBefore == 0 || packsBefore < 6 {
		t.Fatalf("before: %d loose objects, %d packs; the fixture should have both", looseBefore, packsBefore)
	}

	if err := root.HousekeepMirror(ctx, name, HousekeepingOptions{Packs: 4}); err != nil {
		t.Fatalf("HousekeepMirror: %v", err)
	}
	looseAfter, packsAfter := countObjects(t, dir)
	t.Logf("loose objects %d -> %d, packs %d -> %d", looseBefore, looseAfter, packsBefore, packsAfter)
	if packsAfter != 1 {
		t.Errorf("after housekeeping %d packs, want 1", packsAfter)
	}
	// Only the unreachable lone commit (and its tree and blob) may stay
	// loose: two weeks of grace before it may be pruned.
	if looseAfter > 3 {
		t.Errorf("after housekeeping %d loose objects, want at most the 3 unreachable ones", looseAfter)
	}
	if out, err := exec.Command("git", "--git-dir", dir, "fsck", "--connectivity-only", "--no-dangling").CombinedOutput(); err != nil {
		t.Errorf("fsck after housekeeping: %v\n%s", err, out)
	}
	for i, sha := range pinned {
		if got := refAt(t, dir, fmt.Sprintf("refs/pipelines/%d", i+1)); got != sha {
			t.Errorf("refs/pipelines/%d = %q, want %s", i+1, got, sha)
		}
	}
	if err := exec.Command("git", "--git-dir", dir, "cat-file", "-e", lone+"^{tree}").Run(); err != nil {
		t.Errorf("the commit fetched by SHA for a pin in the making was pruned: %v", err)
	}
}

func TestHousekeepingLeavesALocalProjectAlone(t *testing.T) {
	f := newFixture(t) // group/app, local
	dir, err := f.root.RepoPath(f.project)
	if err != nil {
		t.Fatal(err)
	}
	// Many packs: gc --auto would repack them.
	for i := 0; i < 5; i++ {
		f.git.Commit(t, "main", map[string]string{fmt.Sprintf("p%d.txt", i): "x\n"}, "c")
		f.git.Git(t, "repack", "-q")
	}
	_, packsBefore := countObjects(t, dir)
	err = f.root.HousekeepMirror(context.Background(), f.project, HousekeepingOptions{Packs: 1, LooseObjects: 1})
	if !errors.As(err, new(*NotMirrorError)) {
		t.Errorf("HousekeepMirror(local) = %v, want NotMirrorError", err)
	}
	if _, packs := countObjects(t, dir); packs != packsBefore {
		t.Errorf("a local project's packs went from %d to %d", packsBefore, packs)
	}
	stats, err := f.root.MirrorStats(context.Background())
	if err != nil || len(stats) != 0 {
		t.Errorf("MirrorStats = %v %v, want no mirror", stats, err)
	}
}

func TestMirrorStatsMeasureTheObjects(t *testing.T) {
	root, name, _, dir := fetchedMirror(t)
	stats, err := root.MirrorStats(context.Background())
	if err != nil || len(stats) != 1 || stats[0].Name != name {
		t.Fatalf("MirrorStats = %+v %v", stats, err)
	}
	// Measured independently: du's apparent size of the files.
	out, err := exec.Command("sh", "-c", "find "+filepath.Join(dir, "objects")+" -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'").Output()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if want == 0 || stats[0].SizeBytes != want {
		t.Errorf("SizeBytes = %d, want %d", stats[0].SizeBytes, want)
	}
	if stats[0].FetchedAt.IsZero() {
		t.Error("FetchedAt is zero after a fetch")
	}
}
