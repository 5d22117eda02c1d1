package systest

import (
	"sync"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestRunnerFanOutSharesOneGenerationEndToEnd runs two replicas of `serve`
// as production does (the default role, all; the default pack cache
// directory, shared by both) and a pipeline's runners fetching its pin from
// both at once: each replica generates every answer one fetch needs once,
// and every other fetch of the pipeline is a hit, also those that arrive
// while the answer is still being generated. A fetch with an API token goes
// through the binary's pack-objects hook and is shared the same way.
func TestRunnerFanOutSharesOneGenerationEndToEnd(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	args := []string{"--repos", p.root, "--redis", r.URL(), "--rate-limit-address", "0", "--rate-limit-token", "0"}
	a, b := startServer(t, args...), startServer(t, args...)

	code, pin := a.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.merge+`"}`)
	if code != 201 {
		t.Fatalf("pin = %d %v", code, pin)
	}
	token := pin["fetch_token"].(string)
	counts := func(srv *server) (hit, miss float64) {
		text := scrape(t, srv.Base)
		hit, okHit := metricValue(text, `refkeeper_pack_cache_requests_total{result="hit"}`)
		miss, okMiss := metricValue(text, `refkeeper_pack_cache_requests_total{result="miss"}`)
		if !okHit || !okMiss {
			t.Fatalf("/metrics of %s has no pack cache requests:\n%s", srv.Base, grepLines(text, "pack_cache"))
		}
		return hit, miss
	}
	url := "/git/group/app.git"

	// One runner on a: what one fetch asks of the cache.
	runnerFetch(t, a.Base+url, token, 1, p.merge, "2")
	hitA, perFetch := counts(a)
	if perFetch == 0 || hitA != 0 {
		t.Fatalf("one fetch on a cold cache: %v misses, %v hits; want misses and no hit", perFetch, hitA)
	}

	// The pipeline's other runners, on both replicas at once: b starts cold.
	const runners = 6
	var wg sync.WaitGroup
	for range runners {
		wg.Go(func() { runnerFetch(t, a.Base+url, token, 1, p.merge, "2") })
		wg.Go(func() { runnerFetch(t, b.Base+url, token, 1, p.merge, "2") })
	}
	wg.Wait()
	hitA, missA := counts(a)
	hitB, missB := counts(b)
	t.Logf("one fetch asks %v answers; after %d more runners on each replica: a %v hits %v misses, b %v hits %v misses",
		perFetch, runners, hitA, missA, hitB, missB)
	if missA != perFetch || hitA != runners*perFetch {
		t.Errorf("replica a, warm: %v misses and %v hits, want %v and %v", missA, hitA, perFetch, runners*perFetch)
	}
	if missB != perFetch || hitB != (runners-1)*perFetch {
		t.Errorf("replica b, %d runners at once on a cold cache: %v misses and %v hits, want %v and %v (one generation per answer)",
			runners, missB, hitB, perFetch, (runners-1)*perFetch)
	}

	// An API token's fetch: upload-pack runs the binary's hook.
	runnerFetch(t, b.Base+url, testToken, 1, p.merge, "2")
	_, hookMiss := counts(b)
	runnerFetch(t, b.Base+url, testToken, 1, p.merge, "2")
	hookHit, hookMiss2 := counts(b)
	if hookMiss == missB || hookMiss2 != hookMiss || hookHit <= hitB {
		t.Errorf("API token fetches through the hook: misses %v then %v then %v, hits %v then %v; want the first to miss and the second to hit",
			missB, hookMiss, hookMiss2, hitB, hookHit)
	}
}
