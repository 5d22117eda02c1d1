package gitops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/testdata"
)

// One caller's SHAs that the upstream lacks never hold up another caller's
// fetch for a series of retries: a legitimate pin queued with a flood of
// bogus SHAs waits on two upstream round trips of its batch in a row,
// whatever the size of the flood: the shared fetch that failed (with a
// probe asking which SHAs exist alongside it), then the fetch of those that
// do; while bogus SHAs keep coming, the probe first, then the fetch.
// Before, one per bogus SHA; then three for the first flood (the probe
// came after the failed fetch). Its wait with and
// without the flood is printed (a figure, never asserted: the machine may be
// loaded); what is asserted is the number of fetches in a row it waited on.
func TestFetcherIsolatesCallersFromMissingSHAs(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	dir := root.stagingPath(name)
	f := &Fetcher{Root: root}
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	ctx := context.Background()

	// run queues one legitimate fetch of a new upstream commit by SHA and
	// bogus fetches of SHAs nobody has behind a fetch held at the upstream,
	// so they all share the next batch, then lets them go. It answers how
	// long the legitimate fetch took from the release, and how many
	// fetches in a row its batch made it wait on.
	scenario := 0
	run := func(bogus int) (time.Duration, int) {
		t.Helper()
		scenario++
		legit := u.Repo.Commit(t, fmt.Sprintf("side-%d", scenario), map[string]string{"side.txt": fmt.Sprint(scenario)}, "side")
		u.Stall()
		pacer := make(chan error, 1)
		go func() {
			_, err := f.fetchCounted(ctx, "", dir, up, []string{"+refs/heads/main:refs/heads/main"})
			pacer <- err
		}()
		waitFor(t, "the first fetch to reach the upstream", func() bool { return u.Stalled() > 0 })
		var wg sync.WaitGroup
		bogusErrs := make([]error, bogus)
		for i := range bogus {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, bogusErrs[i] = f.fetchCounted(ctx, "", dir, up, []string{fmt.Sprintf("%040x", scenario*1000+i+1)})
			}()
		}
		type result struct {
			took   time.Duration
			rounds int
			err    error
		}
		released := make(chan time.Time, 1)
		legitDone := make(chan result, 1)
		go func() {
			rounds, err := f.fetchCounted(ctx, "", dir, up, []string{legit})
			legitDone <- result{took: time.Since(<-released), rounds: rounds, err: err}
		}()
		waitFor(t, "every caller to queue", func() bool { n, _ := f.Queued(dir); return n == bogus+1 })
		released <- time.Now()
		u.Release()
		res := <-legitDone
		wg.Wait()
		if err := <-pacer; err != nil {
			t.Fatalf("the first fetch: %v", err)
		}
		if res.err != nil {
			t.Fatalf("the legitimate fetch with %d bogus SHAs: %v", bogus, res.err)
		}
		if got := refAt(t, dir, legit+"^{commit}"); got != legit {
			t.Fatalf("the legitimate SHA is not in the mirror after its fetch")
		}
		for i, err := range bogusErrs {
			var nf *UpstreamRefNotFoundError
			if want := fmt.Sprintf("%040x", scenario*1000+i+1); !errors.As(err, &nf) || nf.Ref != want {
				t.Errorf("bogus caller %d got %v, want its own SHA %s not found", i, err, want)
			}
		}
		return res.took, res.rounds
	}

	run(0) // warm up: the first fetches of a process pay for more
	alone, aloneRounds := run(0)
	if aloneRounds != 1 {
		t.Errorf("alone, the legitimate fetch waited on %d fetches of its batch, want 1", aloneRounds)
	}
	// The first flood meets a fetch that fails, its probe asked alongside;
	// while bogus SHAs keep coming, batches probe first. Two either way.
	for _, flood := range []int{20, 5, 20} {
		flooded, floodRounds := run(flood)
		t.Logf("legitimate fetch (after a fetch held at the upstream, in both): alone %v (%d round trip of its batch), with %d bogus SHAs %v (%d round trips in a row); ratio %.2f",
			alone.Round(time.Millisecond), aloneRounds, flood, flooded.Round(time.Millisecond), floodRounds, float64(flooded)/float64(alone))
		if floodRounds > 2 {
			t.Errorf("%d bogus SHAs: the legitimate fetch waited on %d upstream round trips in a row, want at most 2", flood, floodRounds)
		}
	}
}

// The try after a refusal's pace, for a batch of several callers' SHAs, is
// the fetch alone: the refused credential reaches the upstream once per
// step, as for one caller. Before, the probe asked alongside the fetch went
// out before the fetch's refusal was heard, presenting it a second time: 4
// refused requests where one fetch costs 2.
// The batch is gathered behind a fetch that waits for a turn (both held
// here) until the Fetcher's Timeout, an answer that says nothing of the
// credential.
func TestFetcherRefusedTryIsTheFetchAlone(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	dir := root.stagingPath(name)
	root.UpstreamFetches = limits.NewSlots("upstream fetches", 2)
	f := &Fetcher{Root: root, RefusedPace: 100 * time.Millisecond, Timeout: 3 * time.Second}
	up := Upstream{URL: u.URL(), Credential: upstreamCredential}
	ctx := context.Background()
	sha := func(n int) string { return fmt.Sprintf("%040x", 0xdead0000+n) }
	u.SetPassword("rotated")
	refusedLater := func(what string, err error) {
		t.Helper()
		var later *RetryLaterError
		var rejected *UpstreamRejectedError
		if !errors.As(err, &later) || !errors.As(err, &rejected) {
			t.Errorf("%s: %v, want a refusal (RetryLaterError of an UpstreamRejectedError)", what, err)
		}
	}

	// What one refused fetch costs the upstream: the first refusal.
	before := u.Refused()
	refusedLater("the first fetch", f.Fetch(ctx, dir, up, []string{sha(1)}))
	perFetch := u.Refused() - before
	if perFetch == 0 {
		t.Fatal("the first fetch did not reach the upstream")
	}
	waitFor(t, "the refusal's pace to end", func() bool { return f.paced(dir, up) == nil })

	var held []func()
	for range root.UpstreamFetches.Limit() {
		release, err := root.UpstreamFetches.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	pacer := make(chan error, 1)
	go func() { pacer <- f.Fetch(ctx, dir, up, []string{sha(2)}) }()
	waitFor(t, "the fetch ahead to wait for a turn", func() bool { return root.UpstreamFetches.Waiting() == 1 })
	const callers = 3
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Fetch(ctx, dir, up, []string{sha(10 + i)})
		}()
	}
	waitFor(t, "every caller to queue", func() bool { n, _ := f.Queued(dir); return n == callers })
	before = u.Refused()
	var busy *limits.BusyError
	if err := <-pacer; !errors.As(err, &busy) {
		t.Fatalf("the fetch ahead, its turn never free: %v, want a BusyError", err)
	}
	for _, release := range held {
		release()
	}
	wg.Wait()
	for i, err := range errs {
		refusedLater(fmt.Sprintf("caller %d of the batch after the pace", i), err)
	}
	got := u.Refused() - before
	t.Logf("one refused fetch: %d refused requests; a batch of %d callers' SHAs after the pace: %d", perFetch, callers, got)
	if got != perFetch {
		t.Errorf("the batch of %d callers' SHAs after the pace made the upstream refuse %d requests, want %d (one fetch)", callers, got, perFetch)
	}
}

func TestFetchLanes(t *testing.T) {
	wants := [][]string{
		{"1111111111111111111111111111111111111111"},
		{"2222222222222222222222222222222222222222"},
		{"+refs/heads/main:refs/heads/main"},
		{"+refs/heads/main:refs/heads/main", "+refs/heads/dev:refs/heads/dev"},
		{"+refs/heads/dev:refs/heads/dev"},
		{"+refs/heads/x:refs/heads/x"},
		{"+refs/heads/y:refs/heads/y"},
		{"+refs/heads/x:refs/heads/x", "+refs/heads/y:refs/heads/y"},
	}
	got := lanes(wants, []int{0, 1, 2, 3, 4, 5, 6, 7})
	want := [][]int{{0}, {1}, {2, 3, 4}, {5, 6, 7}}
	for _, l := range got {
		slices.Sort(l)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("lanes = %v, want %v (SHAs alone, wants writing a same ref together)", got, want)
	}
}

func TestProbeAsksWhichObjectsTheUpstreamHas(t *testing.T) {
	u := testdata.StartUpstream(t)
	root, name := stagedMirror(t, u)
	dir := root.stagingPath(name)
	ctx := context.Background()
	bogus := "1f3e000000000000000000000000000000000001"
	before := u.UploadPackPosts()
	present, err := root.probe(ctx, dir, Upstream{URL: u.URL(), Credential: upstreamCredential}, []string{u.First, bogus, u.Head}, turnWatch{})
	if err != nil {
		t.Fatal(err)
	}
	if !present[u.First] || !present[u.Head] || present[bogus] || len(present) != 2 {
		t.Errorf("probe = %v, want %s and %s only", present, u.First, u.Head)
	}
	if got := u.UploadPackPosts() - before; got != 1 {
		t.Errorf("the probe made %d upload-pack requests, want 1", got)
	}
	if refAt(t, dir, u.First+"^{commit}") != "" {
		t.Errorf("the probe fetched an object")
	}
	_, err = root.probe(ctx, dir, Upstream{URL: u.URL(), Credential: &Credential{Username: testdata.UpstreamUser, Password: "wrong-password"}}, []string{u.First}, turnWatch{})
	var rejected *UpstreamRejectedError
	if !errors.As(err, &rejected) {
		t.Errorf("probe with a wrong password: %v, want UpstreamRejectedError", err)
	}
	if _, err := root.probe(ctx, dir, Upstream{URL: "file://" + u.Path()}, []string{u.First}, turnWatch{}); !errors.Is(err, ErrProbeUnsupported) {
		t.Errorf("probe of a file upstream: %v, want ErrProbeUnsupported", err)
	}
}
