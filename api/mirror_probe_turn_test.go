package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/testdata"
)

// A probe asked alongside a batch's fetch (which SHAs does the upstream
// have?) only ever runs on a turn of --max-upstream-fetches nobody waits
// for: with one turn, the fetch holds it and the probe is skipped. Here
// the upstream holds every probe (a proxy in front of it): had a probe
// taken the only turn, the fetches behind it would wait until their pins
// answered 503.
func TestProbeAlongsideNeverTakesAFetchsTurn(t *testing.T) {
	f := newMirrorFixture(t, 5*time.Second)
	var (
		mu          sync.Mutex
		probes      int
		gets        int
		wantPosts   int
		held        int
		release     = make(chan struct{})
		releaseOnce sync.Once
	)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	target, _ := url.Parse(f.upstream.BaseURL())
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			mu.Lock()
			gets++
			mu.Unlock()
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte("want ")) {
				mu.Lock()
				wantPosts++
				mu.Unlock()
			}
			if bytes.Contains(body, []byte("have ")) && !bytes.Contains(body, []byte("want ")) {
				mu.Lock()
				probes++
				held++
				mu.Unlock()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				mu.Lock()
				held--
				mu.Unlock()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	writeCredentialHosts(t, f.creds, testdata.UpstreamPassword, proxy.URL)
	if a := f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q, "host": "gitlab", "credential": "upstream"}`,
		proxy.URL+"/"+testdata.UpstreamProject+".git")); a.status != http.StatusAccepted {
		t.Fatalf("PUT: %d %s", a.status, a.raw)
	}
	if a := f.awaitState(t, mirrorPath); a.body["state"] != "ready" {
		t.Fatalf("mirror: %s, want ready", a.raw)
	}
	slots := limits.NewSlots("upstream fetches", 1)
	f.projects.Repos.UpstreamFetches = slots

	// New commits on the upstream that the mirror lacks.
	git := cloneUpstream(t, f.upstream)
	for round := range 8 {
		mu.Lock()
		gets0, wants0 := gets, wantPosts
		mu.Unlock()
		var shas []string
		for i := range 6 {
			// Siblings, not a chain: each SHA is fetched for itself.
			sha := git("commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", fmt.Sprint("new ", round, " ", i))
			shas = append(shas, sha)
			git("push", "-q", f.upstream.Path(), fmt.Sprintf("%s:refs/heads/new-%d-%d", sha, round, i))
		}

		answers := make([]answer, len(shas))
		var wg sync.WaitGroup
		for i, sha := range shas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = f.do(t, http.MethodPut, fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", 300+10*round+i), `{"sha": "`+sha+`"}`)
			}()
		}
		// Watch for the state "a probe is held at the upstream, holding the
		// only turn, while a fetch waits for it".
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		blocked := false
	watch:
		for {
			select {
			case <-done:
				break watch
			case <-time.After(10 * time.Millisecond):
				mu.Lock()
				h := held
				mu.Unlock()
				if h > 0 && slots.InUse() == 1 && slots.Waiting() > 0 {
					blocked = true
				}
			}
		}
		ok := 0
		for i, a := range answers {
			if a.status == http.StatusCreated {
				ok++
			} else {
				t.Logf("pin %d of a SHA the upstream has: %d %s", i, a.status, a.raw)
			}
		}
		mu.Lock()
		t.Logf("round %d: 6 concurrent pins of SHAs the upstream has, one upstream turn: %d answered 201; GET info/refs %d, fetch POSTs %d; probe POSTs so far %d; seen a held probe holding the turn while a fetch waited: %v",
			round, ok, gets-gets0, wantPosts-wants0, probes, blocked)
		mu.Unlock()
		if ok != len(shas) || blocked {
			t.Errorf("round %d: %d of %d pins of SHAs the upstream has failed; a probe held the only turn while a fetch waited: %v", round, len(shas)-ok, len(shas), blocked)
		}
	}
}
