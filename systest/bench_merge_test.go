package systest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// mergeBenchSizes are a computed-merge benchmark's sizes.
type mergeBenchSizes struct {
	files  int // files in the repository
	rounds int // merges each path makes; the median counts
}

var mergeBenchPlans = map[string]mergeBenchSizes{
	"full":  {files: 10_000, rounds: 30},
	"smoke": {files: 1000, rounds: 4},
}

// TestBenchMerge compares a computed-merge pin over HTTP with what anyone
// would run to make the same commit: `git merge-tree --write-tree` plus `git
// commit-tree`, on the same inputs in an identical repository, on tmpfs and
// on disk. Every round merges another source commit, so both paths write
// new trees each time. It asserts that both paths made the same commit in
// every round, that the pin's ref holds it, and that every round's commit is
// a new one; it reports the timings and asserts none.
func TestBenchMerge(t *testing.T) {
	plan := benchPlan(t, mergeBenchPlans)
	var rows []benchRow
	for _, place := range benchPlaces(t, "refkeeper-bench-merge-") {
		rounds := benchMergeOn(t, place.root, plan)
		if len(rounds) != plan.rounds {
			t.Fatalf("%s: %d rounds measured, want %d", place.name, len(rounds), plan.rounds)
		}
		made := map[string]int{}
		for i, r := range rounds {
			if r.pinned != r.git || r.onDisk != r.git {
				t.Errorf("%s, round %d: the pin answered %s and its ref holds %s; git merge-tree + commit-tree make %s",
					place.name, i, r.pinned, r.onDisk, r.git)
			}
			if j, seen := made[r.git]; seen {
				t.Errorf("%s: rounds %d and %d made the same commit %s: a round measured no new merge", place.name, j, i, r.git)
			}
			made[r.git] = i
		}
		rows = append(rows, mergeRow(place.name, plan, rounds))
	}
	fmt.Print(renderBench(os.Getenv(benchEnv), rows))
}

// mergeRound is one round of the merge benchmark: what each path made and
// how long it took.
type mergeRound struct {
	pinned  string        // the SHA the pin answered
	onDisk  string        // what the pin's ref holds, read with git
	git     string        // what git merge-tree + commit-tree made
	pinTime time.Duration // the pin over HTTP
	gitTime time.Duration // the two git commands
}

// benchMergeOn runs plan.rounds rounds of both paths in repositories under
// root, taking turns, so a noisy neighbour falls on both alike.
func benchMergeOn(t *testing.T, root string, plan mergeBenchSizes) []mergeRound {
	stream := mergeBenchHistory(plan.files, plan.rounds)
	pinsRepo := testdata.NewBareRepo(t, root, "bench/merge")
	gitRepo := testdata.NewBareRepo(t, root, "floor/merge")
	for _, dir := range []string{pinsRepo.Dir, gitRepo.Dir} {
		gitRun(t, dir, stream, "fast-import", "--quiet")
		gitRun(t, dir, "", "repack", "-adq")
	}
	target, _ := gitRepo.RefSHA(t, "refs/heads/main")
	sources := make([]string, plan.rounds)
	for i := range sources {
		sources[i], _ = gitRepo.RefSHA(t, fmt.Sprintf("refs/heads/source-%d", i))
	}

	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--role", "api",
		"--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	client := benchClient(2)

	var rounds []mergeRound
	for i, source := range sources {
		var round mergeRound
		start := time.Now()
		out := benchCall(t, client, srv, "PUT", fmt.Sprintf("/api/v1/projects/bench%%2Fmerge/pipelines/%d/ref", i+1),
			`{"merge":{"source":"`+source+`","target":"`+target+`"}}`)
		round.pinTime = time.Since(start)
		start = time.Now()
		round.git = cliMerge(t, gitRepo.Dir, source, target)
		round.gitTime = time.Since(start)
		round.pinned = fmt.Sprint(out["sha"])
		round.onDisk, _ = pinsRepo.RefSHA(t, fmt.Sprintf("refs/pipelines/%d", i+1))
		rounds = append(rounds, round)
	}
	return rounds
}

// mergeRow is the report's line of the merge benchmark at place.
func mergeRow(place string, plan mergeBenchSizes, rounds []mergeRound) benchRow {
	var pins, gits []time.Duration
	for _, r := range rounds {
		pins, gits = append(pins, r.pinTime), append(gits, r.gitTime)
	}
	pin, cli := pct(pins, 50), pct(gits, 50)
	return benchRow{
		what:      fmt.Sprintf("computed merge pin, %d files, %s", plan.files, place),
		refkeeper: "p50 " + durMS(pin),
		baseline:  "merge-tree + commit-tree p50 " + durMS(cli),
		ratio:     ratio(pin, cli),
		target:    "≤ 1.5x",
		verdict:   verdict(float64(pin) <= 1.5*float64(cli)),
	}
}

// cliMerge makes the computed merge with the git CLI alone, as docs/api.md
// shows, and answers its SHA.
func cliMerge(t *testing.T, dir, source, target string) string {
	run := func(env []string, args ...string) string {
		cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	tree, _, _ := strings.Cut(run(nil, "merge-tree", "--write-tree", target, source), "\n")
	// Every commit of the benchmark's history has the same date.
	date := "@1767225601 +0000"
	env := []string{
		"GIT_AUTHOR_NAME=refkeeper", "GIT_AUTHOR_EMAIL=refkeeper@localhost", "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=refkeeper", "GIT_COMMITTER_EMAIL=refkeeper@localhost", "GIT_COMMITTER_DATE=" + date,
	}
	return run(env, "commit-tree", tree, "-p", target, "-p", source, "-m", "Merge "+source+" into "+target)
}

// mergeBenchHistory is a git fast-import stream: a base commit of n files
// in directories of 100, main editing 20 files of the first directories,
// and rounds source branches, each editing 20 files of other directories
// and adding one, differently per branch. Every commit is dated
// 2026-01-01T00:00:00Z, so the stream gives the same SHAs everywhere.
func mergeBenchHistory(n, rounds int) string {
	var b strings.Builder
	mark := 0
	commit := func(branch, from string, files map[string]string) {
		mark++
		fmt.Fprintf(&b, "commit refs/heads/%s\nmark :%d\ncommitter Bench <bench@example.com> 1767225600 +0000\ndata 5\nbench\n", branch, mark)
		if from != "" {
			fmt.Fprintf(&b, "from %s\n", from)
		}
		for path, content := range files {
			fmt.Fprintf(&b, "M 100644 inline %s\ndata %d\n%s\n", path, len(content), content)
		}
	}
	path := func(i int) string { return fmt.Sprintf("d%03d/f%03d.txt", i/100, i%100) }
	base := make(map[string]string, n)
	for i := range n {
		base[path(i)] = fmt.Sprintf("file %d\nline 2\nline 3\n", i)
	}
	commit("base", "", base)
	main := map[string]string{}
	for i := range 20 {
		main[path(i*3)] = fmt.Sprintf("file %d edited on main\nline 2\nline 3\n", i*3)
	}
	commit("main", ":1", main)
	for r := range rounds {
		src := map[string]string{fmt.Sprintf("d%03d/new-%d.txt", (n/100)/2, r): fmt.Sprintf("new in round %d\n", r)}
		for i := range 20 {
			f := n/2 + (r*20+i)%(n/2)
			src[path(f)] = fmt.Sprintf("file %d\nline 2\nline 3 edited in round %d\n", f, r)
		}
		commit(fmt.Sprintf("source-%d", r), ":1", src)
	}
	return b.String()
}
