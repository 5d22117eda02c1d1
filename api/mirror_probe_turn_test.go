package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	creds, _ := json.Marshal(map[string]map[string]any{"upstream": {
		"username": testdata.UpstreamUser, "password": testdata.UpstreamPassword, "hosts": []string{proxy.URL}}})
	if err := os.WriteFile(f.creds, creds, 0o600); err != nil {
		t.Fatal(err)
	}
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
	work := filepath.Join(t.TempDir(), "work")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("clone", "-q", f.upstream.Path(), work)
	for round := range 8 {
		mu.Lock()
		gets0, wants0 := gets, wantPosts
		mu.Unlock()
		var shas []string
		for i := range 6 {
			// Siblings, not a chain: each SHA is fetched for itself.
			sha := run("-C", work, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", fmt.Sprint("new ", round, " ", i))
			shas = append(shas, sha)
			run("-C", work, "push", "-q", f.upstream.Path(), fmt.Sprintf("%s:refs/heads/new-%d-%d", sha, round, i))
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
