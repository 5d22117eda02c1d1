package systest

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// mirrorBenchSizes are a mirror benchmark's sizes.
type mirrorBenchSizes struct {
	rounds     int // pins by merge request, each after the merge ref moved
	concurrent int // pins of one mirror sent at once
}

var mirrorBenchPlans = map[string]mirrorBenchSizes{
	"full":  {rounds: 20, concurrent: 50},
	"smoke": {rounds: 4, concurrent: 10},
}

// TestBenchMirror compares a pin by merge request on a mirror (the
// service fetches the host's merge ref from the upstream, then pins) with a
// plain `git fetch` of the same ref from the same upstream (git
// http-backend behind HTTP with basic auth) into a bare repository, on
// tmpfs and on disk; the merge ref moves upstream before every fetch of
// either path, so each one really fetches. Then many pins of one mirror at
// once, with the upstream fetches counted at the upstream. It asserts what
// each path got and how often it fetched: each pin and each plain fetch
// exactly one fetch and the merge ref's new commit, the pins at once the
// new commit each, with at least one fetch and never more than one per pin.
// It reports the timings and asserts none.
func TestBenchMirror(t *testing.T) {
	plan := benchPlan(t, mirrorBenchPlans)
	benchOnly(t, "mirror")
	var rows []benchRow
	for _, place := range benchPlaces(t, "refkeeper-bench-mirror-") {
		rounds, burst := benchMirrorOn(t, place.root, plan)
		if len(rounds) != plan.rounds || len(burst.shas) != plan.concurrent {
			t.Fatalf("%s: %d rounds and %d pins at once measured, want %d and %d", place.name, len(rounds), len(burst.shas), plan.rounds, plan.concurrent)
		}
		for i, r := range rounds {
			if r.pinned != r.pinWant || r.pinFetches != 1 {
				t.Errorf("%s, round %d: the pin is at %s after %d upstream fetches; want the merge ref's %s after exactly 1",
					place.name, i, r.pinned, r.pinFetches, r.pinWant)
			}
			if r.fetched != r.gitWant || r.gitFetches != 1 {
				t.Errorf("%s, round %d: git fetch got %s in %d upstream fetches; want the merge ref's %s in exactly 1",
					place.name, i, r.fetched, r.gitFetches, r.gitWant)
			}
		}
		for i, sha := range burst.shas {
			if sha != burst.want {
				t.Errorf("%s: pin %d of %d at once is at %s, the merge ref at %s", place.name, i, plan.concurrent, sha, burst.want)
			}
		}
		if burst.fetches < 1 || burst.fetches > plan.concurrent {
			t.Errorf("%s: %d pins at once made %d upstream fetches; want 1 to %d (they moved after the merge ref did)",
				place.name, plan.concurrent, burst.fetches, plan.concurrent)
		}
		rows = append(rows, mirrorRows(place.name, plan, rounds, burst)...)
	}
	fmt.Print(renderBench(os.Getenv(benchEnv), rows))
}

// mirrorRound is one round of the mirror benchmark: each path after the
// merge ref moved upstream, what it got, how many fetches the upstream
// served it and how long it took.
type mirrorRound struct {
	pinned, pinWant  string // the pin's SHA; the merge ref's before it
	pinFetches       int
	pinTime          time.Duration
	fetched, gitWant string // what git fetch got; the merge ref's before it
	gitFetches       int
	gitTime          time.Duration
}

// mirrorBurst is the pins of one mirror sent at once after the merge ref
// moved: their SHAs, the merge ref's, the upstream fetches they made.
type mirrorBurst struct {
	shas    []string
	want    string
	fetches int
	took    time.Duration
}

func benchMirrorOn(t *testing.T, root string, plan mirrorBenchSizes) ([]mirrorRound, mirrorBurst) {
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	repos := filepath.Join(root, "repos")
	creds := filepath.Join(root, "credentials.json")
	if err := os.WriteFile(creds, u.CredentialsJSON("up", testdata.UpstreamPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--repos", repos, "--redis", r.URL(), "--role", "api", "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams,
		"--rate-limit-address", "0", "--rate-limit-token", "0", "--log-level", "warn")
	client := benchClient(plan.concurrent)
	const api = "/api/v1/projects/bench%2Fmirror"
	benchCall(t, client, srv, "PUT", api, fmt.Sprintf(`{"upstream": %q, "host": "gitlab", "credential": "up"}`, u.URL()))
	testdata.WaitFor(t, "the clone", time.Minute, func() bool {
		return benchCall(t, client, srv, "GET", api, "")["state"] != "cloning"
	})

	// The floor: a bare repository fetching the same ref with git alone,
	// the credential in its environment's config (this is the benchmark,
	// not the service).
	floor := testdata.NewBareRepo(t, root, "floor/mirror")
	auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(testdata.UpstreamUser+":"+testdata.UpstreamPassword))
	plainFetch := func() {
		cmd := exec.Command("git", "--git-dir", floor.Dir, "-c", "protocol.version=2", "fetch", "--quiet", "--no-tags",
			"--no-write-fetch-head", u.URL(), "+refs/merge-requests/1/merge:refs/merge-requests/1/merge")
		cmd.Env = append(os.Environ(), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0="+auth,
			"GIT_TERMINAL_PROMPT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git fetch: %v\n%s", err, out)
		}
	}
	moves := 0
	move := func() string {
		moves++
		u.Repo.Commit(t, "feature", map[string]string{"feature.txt": fmt.Sprintf("round %d\n", moves)}, fmt.Sprintf("round %d", moves))
		return u.Repo.SetMergeRequestRef(t, 1, "main", "feature")
	}

	var rounds []mirrorRound
	for i := 0; i < plan.rounds; i++ {
		// Turns alternate, so a noisy neighbour falls on both paths alike.
		var round mirrorRound
		round.pinWant = move()
		before := u.Fetches()
		start := time.Now()
		out := benchCall(t, client, srv, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, i+1), `{"merge_request_iid": 1}`)
		round.pinTime = time.Since(start)
		round.pinFetches = u.Fetches() - before
		round.pinned = fmt.Sprint(out["sha"])

		round.gitWant = move()
		before = u.Fetches()
		start = time.Now()
		plainFetch()
		round.gitTime = time.Since(start)
		round.gitFetches = u.Fetches() - before
		round.fetched, _ = floor.RefSHA(t, "refs/merge-requests/1/merge")
		rounds = append(rounds, round)
	}

	// Many pins at once after the merge ref moved: they share fetches.
	burst := mirrorBurst{want: move(), shas: make([]string, plan.concurrent)}
	before := u.Fetches()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range plan.concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			burst.shas[i] = fmt.Sprint(benchCall(t, client, srv, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, 10_000+i), `{"merge_request_iid": 1}`)["sha"])
		}()
	}
	wg.Wait()
	burst.took = time.Since(start)
	burst.fetches = u.Fetches() - before
	return rounds, burst
}

// mirrorRows are the report's lines of the mirror benchmark at place.
func mirrorRows(place string, plan mirrorBenchSizes, rounds []mirrorRound, burst mirrorBurst) []benchRow {
	var pins, plains []time.Duration
	for _, r := range rounds {
		pins, plains = append(pins, r.pinTime), append(plains, r.gitTime)
	}
	pin, plain := pct(pins, 50), pct(plains, 50)
	return []benchRow{{
		what:      fmt.Sprintf("pin by merge request on a mirror (fetch + pin), %s", place),
		refkeeper: "p50 " + durMS(pin),
		baseline:  "git fetch of the merge ref p50 " + durMS(plain),
		ratio:     ratio(pin, plain),
		target:    "≤ 1.3x",
		verdict:   verdict(float64(pin) <= 1.3*float64(plain)),
	}, {
		what:      fmt.Sprintf("%d concurrent pins of one mirror, %s", plan.concurrent, place),
		refkeeper: fmt.Sprintf("%d upstream fetches, all in %s", burst.fetches, durMS(burst.took)),
		baseline:  fmt.Sprintf("one git fetch p50 %s", durMS(plain)),
		ratio:     ratio(burst.took, plain),
		target:    "≤ 2 fetches",
		verdict:   verdict(burst.fetches <= 2),
	}}
}
