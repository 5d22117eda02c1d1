package systest

import (
	"encoding/base64"
	"encoding/json"
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
// once, with the upstream fetches counted at the upstream. It asserts the
// pins' SHAs and nothing about time.
func TestBenchMirror(t *testing.T) {
	plan, ok := mirrorBenchPlans[os.Getenv(benchEnv)]
	if !ok {
		t.Skipf("set %s=full (make bench) or smoke to run the benchmark", benchEnv)
	}
	if only := os.Getenv(benchOnlyEnv); only != "" && only != "mirror" {
		t.Skipf("%s=%s", benchOnlyEnv, only)
	}
	var rows []benchRow
	for _, place := range []struct{ name, dir string }{{"/dev/shm", "/dev/shm"}, {"disk", ""}} {
		root := t.TempDir()
		if place.dir != "" {
			dir, err := os.MkdirTemp(place.dir, "refkeeper-bench-mirror-")
			if err != nil {
				t.Logf("skipping %s: %v", place.name, err)
				continue
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			root = dir
		}
		rows = append(rows, benchMirrorOn(t, root, place.name, plan)...)
	}
	fmt.Print(renderBench(os.Getenv(benchEnv), rows))
}

func benchMirrorOn(t *testing.T, root, place string, plan mirrorBenchSizes) []benchRow {
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	repos := filepath.Join(root, "repos")
	creds := filepath.Join(root, "credentials.json")
	body, _ := json.Marshal(map[string]map[string]string{"up": {"username": testdata.UpstreamUser, "password": testdata.UpstreamPassword}})
	if err := os.WriteFile(creds, body, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--repos", repos, "--redis", r.URL(), "--role", "api", "--credentials", creds,
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
	round := 0
	move := func() string {
		round++
		u.Repo.Commit(t, "feature", map[string]string{"feature.txt": fmt.Sprintf("round %d\n", round)}, fmt.Sprintf("round %d", round))
		return u.Repo.SetMergeRequestRef(t, 1, "main", "feature")
	}

	var pins, plains []time.Duration
	for i := 0; i < plan.rounds; i++ {
		// Turns alternate, so a noisy neighbour falls on both paths alike.
		want := move()
		start := time.Now()
		out := benchCall(t, client, srv, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, i+1), `{"merge_request_iid": 1}`)
		pins = append(pins, time.Since(start))
		if out["sha"] != want {
			t.Fatalf("round %d: pinned %v, the merge ref is at %s", i, out["sha"], want)
		}
		want = move()
		start = time.Now()
		plainFetch()
		plains = append(plains, time.Since(start))
		if got, _ := floor.RefSHA(t, "refs/merge-requests/1/merge"); got != want {
			t.Fatalf("round %d: git fetch got %s, want %s", i, got, want)
		}
	}
	pin, plain := pct(pins, 50), pct(plains, 50)
	rows := []benchRow{{
		what:      fmt.Sprintf("pin by merge request on a mirror (fetch + pin), %s", place),
		refkeeper: "p50 " + durMS(pin),
		baseline:  "git fetch of the merge ref p50 " + durMS(plain),
		ratio:     ratio(pin, plain),
		target:    "≤ 1.3x",
		verdict:   verdict(float64(pin) <= 1.3*float64(plain)),
	}}

	// Many pins at once after the merge ref moved: they share fetches.
	want := move()
	before := u.Fetches()
	var wg sync.WaitGroup
	shas := make([]any, plan.concurrent)
	start := time.Now()
	for i := 0; i < plan.concurrent; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shas[i] = benchCall(t, client, srv, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, 10_000+i), `{"merge_request_iid": 1}`)["sha"]
		}()
	}
	wg.Wait()
	took := time.Since(start)
	fetches := u.Fetches() - before
	for i, sha := range shas {
		if sha != want {
			t.Fatalf("concurrent pin %d is at %v, the merge ref at %s", i, sha, want)
		}
	}
	rows = append(rows, benchRow{
		what:      fmt.Sprintf("%d concurrent pins of one mirror, %s", plan.concurrent, place),
		refkeeper: fmt.Sprintf("%d upstream fetches, all in %s", fetches, durMS(took)),
		baseline:  fmt.Sprintf("one git fetch p50 %s", durMS(plain)),
		ratio:     ratio(took, plain),
		target:    "≤ 2 fetches",
		verdict:   verdict(fetches <= 2),
	})
	return rows
}
