package githttp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// wrapperGit writes dir/git, an sh script that stands in for git: script
// makes its text from the real git's path, which it runs in the end, after
// noting or changing what a run of git http-backend does.
func wrapperGit(t *testing.T, dir string, script func(real string) string) (gitBinary string) {
	t.Helper()
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	gitBinary = filepath.Join(dir, "git")
	if err := os.WriteFile(gitBinary, []byte(script(real)), 0o755); err != nil {
		t.Fatal(err)
	}
	return gitBinary
}

// runLog is what a wrapper git has written to runs so far ("" before its
// first run).
func runLog(t *testing.T, runs string) string {
	t.Helper()
	b, err := os.ReadFile(runs)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// leavingFetch sends the v2 fetch body to bare with token in the
// background, as a client that goes away: leave cancels the request and
// waits until it has ended. gz says body is gzipped (Content-Encoding).
func leavingFetch(bare, token string, body []byte, gz bool) (leave func()) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", bare+"/git-upload-pack", bytes.NewReader(body))
	req.SetBasicAuth("x", token)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	req.Header.Set("Git-Protocol", "version=2")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	return func() {
		cancel()
		<-gone
	}
}

// countingGit is a git whose every `git http-backend` run leaves a line
// in the file it answers (the real git runs it all), and that first
// sleeps pause, so an answer is still generated while other requests
// arrive.
func countingGit(t *testing.T, pause string) (gitBinary, runs string) {
	t.Helper()
	dir := t.TempDir()
	runs = filepath.Join(dir, "runs")
	return wrapperGit(t, dir, func(real string) string {
		return "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = http-backend ] && echo \"$QUERY_STRING$REQUEST_METHOD $HTTP_GIT_PROTOCOL\" >> " + runs + " && sleep " + pause + "; done\nexec " + real + " \"$@\"\n"
	}), runs
}

// v0Runs counts the http-backend runs of countingGit that were not
// protocol v2: a scoped fetch's v0 and v1 requests are all shared.
func v0Runs(t *testing.T, runs string) int {
	t.Helper()
	log := runLog(t, runs)
	return strings.Count(log, "\n") - strings.Count(log, "version=2")
}

// backendRuns counts the http-backend runs of countingGit that were
// fetch posts (POST) and advertisements (GET).
func backendRuns(t *testing.T, runs string) (posts, gets int) {
	t.Helper()
	log := runLog(t, runs)
	return strings.Count(log, "POST"), strings.Count(log, "GET")
}

// TestResponseCacheSharesConcurrentFetches: runners of one pin fetching
// at once with the real git CLI (the same version and flags: their
// filtered requests are byte-identical) run one `git http-backend` per
// shared request: in v2 one fetch (one miss, the rest hits); in v0 one
// advertisement and the two posts of a depth-1 fetch. Every runner gets
// the pinned commit whole and checks it out; a fetch after the entries
// are complete is a hit too and runs no git, and a finished answer is
// sent with its length.
func TestResponseCacheSharesConcurrentFetches(t *testing.T) {
	reg := prometheus.NewRegistry()
	gitBinary, runs := countingGit(t, "0.5")
	f := newFixture(t, gitBinary, withCache(openCache(t, reg)))
	url := f.pinURL(t, 7, f.git.Second)
	const n = 6
	wantRuns := map[string][2]int{"2": {1, 0}, "0": {2, 1}} // shared posts, shared gets
	misses, hits := 0.0, 0.0
	for _, proto := range []string{"2", "0"} {
		posts0, gets0 := backendRuns(t, runs)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { checkoutPin(t, url, proto, f.git.Second) })
		}
		wg.Wait()
		posts, gets := backendRuns(t, runs)
		// v2: the capability advertisement and ls-refs are not shared:
		// each runner runs its own (cheap) ones.
		shared := 1
		if proto == "0" {
			shared = 3
		}
		gotPosts, gotGets := posts-posts0, gets-gets0
		if proto == "2" {
			gotPosts -= n // ls-refs
			gotGets -= n
		}
		if gotPosts != wantRuns[proto][0] || gotGets != wantRuns[proto][1] {
			t.Errorf("protocol %s: %d runners ran %d shared posts and %d shared advertisements, want %v", proto, n, gotPosts, gotGets, wantRuns[proto])
		}
		misses += float64(shared)
		hits += float64(shared * (n - 1))
		if got := cacheResults(t, reg); got["miss"] != misses || got["hit"] != hits {
			t.Fatalf("protocol %s: cache results %v, want %v misses and %v hits", proto, got, misses, hits)
		}
	}

	// A request of its own: a miss, then complete: a hit, no git, sent
	// with its Content-Length.
	posts0, _ := backendRuns(t, runs)
	token, bare := tokenOf(url)
	body := uploadPackRequest(true, []string{f.git.Second}, nil, nil, 1)
	req, _ := http.NewRequest("POST", bare+"/git-upload-pack", bytes.NewReader(body))
	req.SetBasicAuth("x", token)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	req.Header.Set("Git-Protocol", "version=2")
	for i := range 2 {
		resp, err := http.DefaultClient.Do(req.Clone(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The first is a request of its own (not git's: another key), streamed.
		if resp.StatusCode != http.StatusOK || i == 1 && resp.ContentLength != int64(len(raw)) || !bytes.Contains(raw, []byte("PACK")) {
			t.Fatalf("a complete entry: %d, Content-Length %d for %d bytes", resp.StatusCode, resp.ContentLength, len(raw))
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if posts, _ := backendRuns(t, runs); posts != posts0+1 {
		t.Fatalf("two identical posts ran %d http-backends, want 1", posts-posts0)
	}
	if got := cacheResults(t, reg); got["miss"] != misses+1 || got["hit"] != hits+1 {
		t.Fatalf("cache results %v, want one more miss and one more hit", got)
	}
}

// checkoutPin is a runner's job: a fresh repository, a depth-1 fetch of
// the pin's ref, a checkout of the pinned SHA.
func checkoutPin(t *testing.T, url, proto, sha string) {
	work := t.TempDir()
	if out, err := runGit(t, work, "init", "-q", "."); err != nil {
		t.Error(out)
		return
	}
	if out, err := runGit(t, work, "-c", "protocol.version="+proto, "fetch", "-q", "--no-tags", "--depth=1", url, "+refs/pipelines/7:refs/pipelines/7"); err != nil {
		t.Errorf("fetch over protocol %s: %v\n%s", proto, err, out)
		return
	}
	if out, err := runGit(t, work, "checkout", "-q", "--detach", "refs/pipelines/7"); err != nil {
		t.Errorf("checkout: %v\n%s", err, out)
		return
	}
	if out, _ := runGit(t, work, "rev-parse", "HEAD"); strings.TrimSpace(out) != sha {
		t.Errorf("checked out %q, want %s", strings.TrimSpace(out), sha)
	}
}

// TestResponseCacheOutlivesItsClient: the runner that started a shared
// answer goes away while git still generates it; the generation goes on,
// the runners waiting on it complete, and a later fetch is a hit.
func TestResponseCacheOutlivesItsClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	gitBinary, runs := countingGit(t, "1")
	f := newFixture(t, gitBinary, withCache(openCache(t, reg)))
	url := f.pinURL(t, 7, f.git.Second)
	token, bare := tokenOf(url)
	body := uploadPackRequest(true, []string{f.git.Second}, nil, nil, 1)
	leave := leavingFetch(bare, token, body, false)
	// Gone once its generation started (git sleeps a second first).
	for posts, _ := backendRuns(t, runs); posts == 0; posts, _ = backendRuns(t, runs) {
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { fetchPinV2(t, bare, token, body, f.git.Second) })
	}
	// Gone once the others read the same entry.
	for cacheResults(t, reg)["hit"] < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	leave()
	wg.Wait()
	fetchPinV2(t, bare, token, body, f.git.Second)
	if posts, _ := backendRuns(t, runs); posts != 1 {
		t.Fatalf("%d http-backends ran, want 1", posts)
	}
	if got := cacheResults(t, reg); got["miss"] != 1 || got["hit"] != 4 {
		t.Fatalf("cache results %v, want 1 miss and 4 hits", got)
	}
}

// fetchPinV2 posts a v2 fetch and checks that the pack holds the pinned
// commit.
func fetchPinV2(t *testing.T, bare, token string, body []byte, sha string) {
	status, objects := postUploadPack(t, strings.TrimSuffix(bare, "/git/group/app.git"), token, true, body)
	if status != http.StatusOK || !containsString(objects, sha) {
		t.Errorf("a fetch: %d with %d objects, want 200 and the pinned commit", status, len(objects))
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestResponseCacheDropsFailedGenerations: a generation whose git fails
// after it started answering (its output cut, exit 1) is not kept: the
// client that got it sees a broken answer, and the next identical
// request generates again and gets the whole pack.
func TestResponseCacheDropsFailedGenerations(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail-once")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	gitBinary := wrapperGit(t, dir, func(real string) string {
		return "#!/bin/sh\nif [ -e " + flag + " ]; then rm " + flag + "; " + real + " \"$@\" | head -c 400; exit 1; fi\nexec " + real + " \"$@\"\n"
	})
	f := newFixture(t, gitBinary, withCache(openCache(t, reg)))
	url := f.pinURL(t, 7, f.git.Second)
	token, bare := tokenOf(url)
	body := uploadPackRequest(true, []string{f.git.Second}, nil, nil, 1)
	if status, raw := postRaw(t, bare, token, true, body); status == http.StatusOK && bytes.Contains(raw, []byte("PACK")) && len(raw) > 400 {
		t.Fatalf("the failed generation answered %d bytes", len(raw))
	}
	for range 2 {
		fetchPinV2(t, bare, token, body, f.git.Second)
	}
	if got := cacheResults(t, reg); got["miss"] != 2 || got["hit"] != 1 {
		t.Fatalf("cache results %v, want 2 misses (the failure, then again) and 1 hit", got)
	}
}
