package systest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// soakEnv turns the soak on and sets its length: REFKEEPER_SOAK=60s.
const soakEnv = "REFKEEPER_SOAK"

// Soak timing: pipelines live a few seconds, well under max-age, so a ref
// that goes while its pipeline runs is a loss, never policy.
const (
	soakRetention  = 2 * time.Second
	soakMaxAge     = 15 * time.Second
	soakGCInterval = 2 * time.Second
	soakClients    = 8
)

// soakStats are the figures the soak prints.
type soakStats struct {
	pipelines, created, deleted, leaked, lostWhilePinned        atomic.Int64
	serverErrors, unavailable, connErrors, kills, redisRestarts atomic.Int64
}

// soakCluster is two replicas that the chaos loop kills and restarts.
type soakCluster struct {
	mu       sync.Mutex
	replicas [2]*server
	flags    []string
}

func (c *soakCluster) pick() *server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[rand.N(2)]
}

// TestSoak runs many pipelines' whole lifecycle against two replicas while
// replicas are killed with -9 and Redis restarts empty, then checks that
// every ref was deleted in the end, none went while its pipeline ran, and no
// request got a 5xx other than the documented 503 (Redis down, retried).
func TestSoak(t *testing.T) {
	length, err := time.ParseDuration(os.Getenv(soakEnv))
	if err != nil || length <= 0 {
		t.Skipf("set %s=60s to run the soak (make soak)", soakEnv)
	}
	p := newProject(t)
	r := testdata.StartRedis(t)
	shas := []string{p.c1, p.c2, p.merge}
	cluster := &soakCluster{flags: []string{"--repos", p.root, "--redis", r.URL(),
		"--retention", soakRetention.String(), "--max-age", soakMaxAge.String(), "--gc-interval", soakGCInterval.String(),
		"--rate-limit-address", "0", "--rate-limit-token", "0"}}
	for i := range cluster.replicas {
		cluster.replicas[i] = startServer(t, cluster.flags...)
	}
	var st soakStats
	var nextID atomic.Int64
	nextID.Store(100000)

	// call retries through whichever replica is up; 503 is the documented
	// retryable answer while Redis is down, any other 5xx is a failure.
	call := func(method, path, body string) (int, map[string]any) {
		for attempt := 0; ; attempt++ {
			srv := cluster.pick()
			resp, err := httpDo(method, srv.Base+path, body)
			if err != nil {
				st.connErrors.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			code, out := resp.StatusCode, decodeJSON(resp)
			switch {
			case code == http.StatusServiceUnavailable:
				st.unavailable.Add(1)
				time.Sleep(200 * time.Millisecond)
				continue
			case code >= 500:
				st.serverErrors.Add(1)
				t.Errorf("%s %s: %d %v", method, path, code, out)
			}
			return code, out
		}
	}

	deadline := time.Now().Add(length)
	var wg sync.WaitGroup
	for range soakClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				st.pipelines.Add(1)
				runPipeline(t, p, &st, call, nextID.Add(1), shas[rand.N(len(shas))])
			}
		}()
	}
	wg.Add(1)
	go func() { // chaos
		defer wg.Done()
		for action := 0; time.Now().Before(deadline.Add(-3 * time.Second)); action++ {
			time.Sleep(time.Duration(2000+rand.N(3000)) * time.Millisecond)
			if action%3 == 1 { // every third action restarts Redis, empty
				r.Stop(t)
				time.Sleep(500 * time.Millisecond)
				r.Start(t)
				st.redisRestarts.Add(1)
				continue
			}
			i := rand.N(2)
			cluster.mu.Lock()
			victim := cluster.replicas[i]
			cluster.mu.Unlock()
			victim.Kill(t)
			st.kills.Add(1)
			replacement := startServer(t, cluster.flags...)
			cluster.mu.Lock()
			cluster.replicas[i] = replacement
			cluster.mu.Unlock()
		}
	}()
	wg.Wait()

	// Everything run must be gone within max-age (refs whose records Redis
	// lost are adopted and live exactly that long) plus two sweeps.
	drain := time.Now().Add(soakMaxAge + 2*soakGCInterval + 5*time.Second)
	for time.Now().Before(drain) && len(p.git.Refs(t, "refs/pipelines/")) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	st.leaked.Store(int64(len(p.git.Refs(t, "refs/pipelines/"))))
	st.deleted.Store(st.created.Load() - st.leaked.Load())

	report := fmt.Sprintf(`soak over %v with 2 replicas and %d clients:
| figure | value |
|---|---|
| pipelines run | %d |
| refs created | %d |
| refs deleted | %d |
| refs leaked | %d |
| refs lost while pinned | %d |
| 5xx answers (other than 503) | %d |
| 503 unavailable, retried | %d |
| connection errors, retried | %d |
| replicas killed with -9 | %d |
| Redis restarts (empty) | %d |
`, length, soakClients, st.pipelines.Load(), st.created.Load(), st.deleted.Load(), st.leaked.Load(),
		st.lostWhilePinned.Load(), st.serverErrors.Load(), st.unavailable.Load(), st.connErrors.Load(),
		st.kills.Load(), st.redisRestarts.Load())
	fmt.Print(report)
	if st.leaked.Load() != 0 || st.lostWhilePinned.Load() != 0 || st.serverErrors.Load() != 0 {
		t.Fatalf("soak failed:\n%s", report)
	}
}

// runPipeline is one pipeline: pin, jobs that check the ref, finish, and
// sometimes a retried job after the finish.
func runPipeline(t *testing.T, p *project, st *soakStats, call func(string, string, string) (int, map[string]any), id int64, sha string) {
	path := fmt.Sprintf("%s/pipelines/%d", apiBase, id)
	code, _ := call("PUT", path+"/ref", `{"sha":"`+sha+`"}`)
	switch code {
	case 201:
		st.created.Add(1)
	case 200: // created by an attempt whose answer was lost to a kill
		st.created.Add(1)
	default:
		t.Errorf("pin %d: %d", id, code)
		return
	}
	check := func() {
		if got, ok := p.git.RefSHA(t, fmt.Sprintf("refs/pipelines/%d", id)); !ok || got != sha {
			st.lostWhilePinned.Add(1)
			t.Errorf("pipeline %d: ref %q while pinned to %s", id, got, sha)
		}
	}
	for range 1 + rand.N(3) {
		time.Sleep(time.Duration(50+rand.N(300)) * time.Millisecond)
		check()
	}
	if code, _ := call("POST", path+"/finish", ""); code != 200 && code != 404 {
		// 404: Redis lost the pin; the sweep adopts the ref and max-age ends it.
		t.Errorf("finish %d: %d", id, code)
	}
	if rand.N(4) == 0 { // a retried job: re-pin, run, finish again
		if code, _ := call("PUT", path+"/ref", `{"sha":"`+sha+`"}`); code == 200 || code == 201 {
			check()
			call("POST", path+"/finish", "")
		}
	}
}
