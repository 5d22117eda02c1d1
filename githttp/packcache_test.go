package githttp

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/refs"
)

// TestMain lets this test binary be the pack cache's hook, as the
// refkeeper binary is in production: upload-pack runs it with the hook's
// command.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == packcache.HookCommand {
		os.Exit(packcache.RunHook(context.Background(), os.Args[2:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// openCache opens a pack cache whose hook is this test binary.
func openCache(t *testing.T, reg prometheus.Registerer) *packcache.Cache {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := packcache.Open(packcache.Config{Dir: t.TempDir(), Hook: []string{exe, packcache.HookCommand}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// withCache gives the fixture's server a pack cache.
func withCache(c *packcache.Cache) func(*Config) {
	return func(cfg *Config) { cfg.PackCache = c }
}

// pinURL pins pipeline id at sha and answers the fetch URL with the pin's
// fetch token as the password.
func (f *fixture) pinURL(t *testing.T, id int64, sha string) string {
	t.Helper()
	pin, _, err := f.pins.Service.Pin(context.Background(), refs.PinRequest{Project: "group/app", PipelineID: refs.PipelineID(id), SHA: refs.ObjectID(sha)})
	if err != nil {
		t.Fatal(err)
	}
	return "http://x:" + f.signer.Sign(pin) + "@" + strings.TrimPrefix(f.base, "http://") + "/git/group/app.git"
}

// cacheResults reads refkeeper_pack_cache_requests_total by result.
func cacheResults(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "refkeeper_pack_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// fetchPin fetches what a runner fetches (depth 1, a fresh repository)
// with the git CLI over protocol proto, by ref or by SHA, and checks that
// the pinned commit arrived whole.
func fetchPin(t *testing.T, url, proto, what, sha string) {
	t.Helper()
	work := t.TempDir()
	if out, err := runGit(t, work, "init", "-q", "--bare", "."); err != nil {
		t.Fatal(out)
	}
	if out, err := runGit(t, work, "-c", "protocol.version="+proto, "fetch", "--no-tags", "--depth=1", url, what); err != nil {
		t.Fatalf("fetch %s over protocol %s: %v\n%s", what, proto, err, out)
	}
	if out, err := runGit(t, work, "fsck", "--connectivity-only", sha); err != nil {
		t.Fatalf("protocol %s, %s: the fetched commit is not whole: %v\n%s", proto, what, err, out)
	}
}

// TestPackCacheSharesRunnerFetches: the runners of one pin (the same
// fetch token's request, depth 1, fresh repositories) share one answer
// per request of the fetch (the response cache), and API-token fetches
// share one pack generation per protocol (the hook): the first is a miss,
// the repeats hits, and every fetch gets the commit whole, in v0, v1 and
// v2.
func TestPackCacheSharesRunnerFetches(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, "", withCache(openCache(t, reg)))
	url := f.pinURL(t, 7, f.git.Second)
	for _, proto := range []string{"0", "1", "2"} {
		for range 2 {
			fetchPin(t, url, proto, "+refs/pipelines/7:refs/pipelines/7", f.git.Second)
		}
	}
	// A scoped v0 or v1 depth-1 fetch is three shared requests: the
	// advertisement (v1's differs), the wants with the depth, then the
	// same with done; git sends no protocol header with a v1 request, so
	// its posts are v0's. A v2 fetch shares its fetch command alone (its
	// capabilities and ls-refs are cheap and not shared).
	got := cacheResults(t, reg)
	if got["miss"] != 5 || got["hit"] != 9 || got["bypass"] != 0 {
		t.Fatalf("cache results %v, want 5 misses (v0 advertisement, two v0 posts, v1 advertisement, v2 fetch) and 9 hits", got)
	}
	// An API token's fetch goes through the hook: one pack per protocol.
	for _, proto := range []string{"0", "1", "2"} {
		for range 2 {
			fetchPin(t, f.url, proto, "+refs/pipelines/7:refs/pipelines/7", f.git.Second)
		}
	}
	got = cacheResults(t, reg)
	if got["miss"] != 5+2 || got["hit"] != 9+4 || got["bypass"] != 0 {
		t.Fatalf("cache results %v, want 2 more misses (v0 and v1, v2) and 4 more hits", got)
	}
}
