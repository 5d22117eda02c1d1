package packcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/testdata"
)

// packCmd is what upload-pack gives its hook for a depth-1 fetch.
var packCmd = []string{"git", "--shallow-file", "", "pack-objects", "--revs", "--thin", "--stdout", "--shallow", "--progress", "--delta-base-offset"}

type rig struct {
	cache *Cache
	repo  string
	sha   string
	stdin []byte
}

// newRig opens a cache on a repository with two commits; slow makes
// every generation wait a second before git starts.
func newRig(t *testing.T, slow bool, configure ...func(*Config)) *rig {
	t.Helper()
	testdata.GitAvailable(t)
	g := testdata.NewBareRepo(t, t.TempDir(), "group/app")
	g.Commit(t, "main", map[string]string{"a.txt": "one\n"}, "first")
	sha := g.Commit(t, "main", map[string]string{"a.txt": "two\n", "b.txt": strings.Repeat("b", 1<<16)}, "second")
	runner := &gitexec.Runner{}
	if slow {
		script := filepath.Join(t.TempDir(), "git")
		if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 1\nexec git \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		runner.Git = script
	}
	cfg := Config{Dir: t.TempDir(), Hook: []string{"unused"}, Git: runner, Registerer: prometheus.NewRegistry()}
	for _, c := range configure {
		c(&cfg)
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The hook runs in the repository, as upload-pack's child does.
	t.Chdir(g.Dir)
	return &rig{cache: c, repo: g.Dir, sha: sha, stdin: []byte("--shallow " + sha + "\n" + sha + "\n--not\n\n")}
}

// hook runs the hook as upload-pack would for one request of the rig's
// repository (a ticket of its own), and answers its exit status and
// stdout.
func (r *rig) hook(t *testing.T, stdout func([]byte) error) (int, []byte) {
	t.Helper()
	env, release, ok := r.cache.Hook(r.repo, "group/app", 2)
	if !ok {
		t.Fatal("the cache bypassed itself")
	}
	defer release()
	return r.hookWith(t, env, packCmd, stdout)
}

func (r *rig) hookWith(t *testing.T, env []string, cmd []string, stdout func([]byte) error) (int, []byte) {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	hookCmd := strings.Fields(vars["GIT_CONFIG_VALUE_0"])
	if vars["GIT_CONFIG_KEY_0"] != "uploadpack.packObjectsHook" || len(hookCmd) == 0 {
		t.Fatalf("hook environment %q", env)
	}
	sock := strings.Trim(hookCmd[len(hookCmd)-1], "'")
	out := &sinkWriter{write: stdout}
	var stderr bytes.Buffer
	code := RunHook(context.Background(), append([]string{sock}, cmd...), func(k string) string { return vars[k] }, bytes.NewReader(r.stdin), out, &stderr)
	if code != 0 && stdout == nil {
		t.Logf("hook: %s", stderr.String())
	}
	return code, out.b.Bytes()
}

type sinkWriter struct {
	b     bytes.Buffer
	write func([]byte) error
}

func (w *sinkWriter) Write(p []byte) (int, error) {
	if w.write != nil {
		if err := w.write(p); err != nil {
			return 0, err
		}
	}
	return w.b.Write(p)
}

func results(c *Cache) (hit, miss, bypass float64) {
	m := c.metrics.requests
	return testutil.ToFloat64(m.WithLabelValues("hit")), testutil.ToFloat64(m.WithLabelValues("miss")), testutil.ToFloat64(m.WithLabelValues("bypass"))
}

// isPack checks a pack's signature and answers its object count.
func isPack(t *testing.T, b []byte) int {
	t.Helper()
	if len(b) < 32 || string(b[:4]) != "PACK" {
		t.Fatalf("not a pack: %q...", b[:min(len(b), 16)])
	}
	return int(b[8])<<24 | int(b[9])<<16 | int(b[10])<<8 | int(b[11])
}

// TestOneGenerationPerKey: requests that arrive while the first one's
// pack is still generated read the same entry from its start, following
// the writer: one miss, the rest hits, the same bytes for all, a whole
// pack.
func TestOneGenerationPerKey(t *testing.T) {
	r := newRig(t, true)
	const n = 5
	outs := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, out := r.hook(t, nil)
			if code != 0 {
				t.Errorf("hook %d exited %d", i, code)
			}
			outs[i] = out
		})
	}
	wg.Wait()
	if hit, miss, _ := results(r.cache); miss != 1 || hit != n-1 {
		t.Fatalf("%v hits and %v misses, want %d and 1", hit, miss, n-1)
	}
	for i := range outs {
		if !bytes.Equal(outs[i], outs[0]) {
			t.Fatalf("reader %d got %d bytes, reader 0 %d", i, len(outs[i]), len(outs[0]))
		}
	}
	if objects := isPack(t, outs[0]); objects != 4 { // commit, tree, two blobs
		t.Fatalf("the pack has %d objects, want 4", objects)
	}
	if got := testutil.ToFloat64(r.cache.metrics.bytes); got != float64(len(outs[0])) {
		t.Fatalf("refkeeper_pack_cache_bytes is %v with one entry of %d bytes", got, len(outs[0]))
	}
}

// TestGenerationOutlivesItsClient: the client that started a generation
// goes away at its first byte; the generation goes on, and a later
// request is a hit with the whole pack.
func TestGenerationOutlivesItsClient(t *testing.T) {
	r := newRig(t, true)
	code, _ := r.hook(t, func([]byte) error { return errors.New("client gone") })
	if code == 0 {
		t.Fatal("a hook whose upload-pack went away exited 0")
	}
	code, out := r.hook(t, nil)
	if code != 0 {
		t.Fatalf("second hook exited %d", code)
	}
	if hit, miss, _ := results(r.cache); miss != 1 || hit != 1 {
		t.Fatalf("%v hits and %v misses, want 1 and 1", hit, miss)
	}
	isPack(t, out)
}

// TestCrashedEntriesAreNeverServed: the directory a dead process left
// (its lock free), partial entry and all, is removed at start; a live
// process's is kept.
func TestCrashedEntriesAreNeverServed(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "proc-dead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"lock", "0123-1.entry"} {
		if err := os.WriteFile(filepath.Join(dead, f), []byte("PACK partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	live, err := Open(Config{Dir: dir, Hook: []string{"unused"}})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("the dead process's entries are still there: %v", err)
	}
	other, err := Open(Config{Dir: dir, Hook: []string{"unused"}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := os.Stat(live.dir); err != nil {
		t.Fatalf("a live process's directory was removed: %v", err)
	}
}

// TestEviction: an entry older than MaxAge is generated again; past
// MaxBytes the finished entries go; the size metric follows.
func TestEviction(t *testing.T) {
	t.Run("age", func(t *testing.T) {
		r := newRig(t, false, func(c *Config) { c.MaxAge = 200 * time.Millisecond })
		r.hook(t, nil)
		// The janitor runs every MaxAge/2; a loaded machine may take long.
		for deadline := time.Now().Add(time.Minute); testutil.ToFloat64(r.cache.metrics.bytes) != 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("refkeeper_pack_cache_bytes is %v a minute after the entry expired", testutil.ToFloat64(r.cache.metrics.bytes))
			}
		}
		r.hook(t, nil)
		if hit, miss, _ := results(r.cache); miss != 2 || hit != 0 {
			t.Fatalf("%v hits and %v misses, want 0 and 2", hit, miss)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		r := newRig(t, false, func(c *Config) { c.MaxBytes = 1 })
		r.hook(t, nil)
		r.hook(t, nil)
		if hit, miss, _ := results(r.cache); miss != 2 || hit != 0 {
			t.Fatalf("%v hits and %v misses, want 0 and 2", hit, miss)
		}
		entries, _ := filepath.Glob(filepath.Join(r.cache.dir, "*.entry"))
		if len(entries) != 0 {
			t.Fatalf("entries over MaxBytes left: %v", entries)
		}
	})
}

// TestBypass: off, below the disk floor (asked per request, also after
// the hook was set up), for arguments it does not serve, and for a
// request without a live ticket (none, or one used already), the cache
// serves nothing; the hook then runs pack-objects itself, so the fetch
// still gets its pack.
func TestBypass(t *testing.T) {
	off, err := Open(Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := off.Hook("/nowhere", "group/app", 2); ok {
		t.Fatal("a cache that is off set up its hook")
	}
	if _, _, bypass := results(off); bypass != 1 {
		t.Fatalf("off: %v bypasses, want 1", bypass)
	}

	var below atomic.Bool
	r := newRig(t, false, func(c *Config) { c.BelowFloor = below.Load })
	below.Store(true)
	if _, _, ok := r.cache.Hook(r.repo, "group/app", 2); ok {
		t.Fatal("below the floor, the cache set up its hook")
	}
	if _, _, ok := r.cache.Hook(r.repo, "group/app", 2); ok {
		t.Fatal("below the floor, the cache set up its hook")
	}
	below.Store(false)
	env, release, ok := r.cache.Hook(r.repo, "group/app", 2)
	if !ok {
		t.Fatal("no hook above the floor")
	}
	defer release()
	below.Store(true)
	code, out := r.hookWith(t, env, packCmd, nil)
	if code != 0 {
		t.Fatalf("the hook exited %d below the floor", code)
	}
	isPack(t, out)
	below.Store(false)

	// The ticket was used: the same environment again bypasses.
	if code, out = r.hookWith(t, env, packCmd, nil); code != 0 {
		t.Fatalf("a used ticket: the hook exited %d", code)
	}
	isPack(t, out)
	// No ticket at all.
	noTicket := []string{}
	for _, kv := range env {
		if !strings.HasPrefix(kv, TicketEnv+"=") {
			noTicket = append(noTicket, kv)
		}
	}
	if code, out = r.hookWith(t, noTicket, packCmd, nil); code != 0 {
		t.Fatalf("no ticket: the hook exited %d", code)
	}
	isPack(t, out)
	// Arguments the cache does not serve.
	env2, release2, _ := r.cache.Hook(r.repo, "group/app", 2)
	defer release2()
	filtered := append(append([]string{}, packCmd...), "--filter=blob:none")
	if code, out = r.hookWith(t, env2, filtered, nil); code != 0 {
		t.Fatalf("--filter: the hook exited %d", code)
	}
	isPack(t, out)
	// Counted: twice at Hook below the floor, then at the socket below
	// the floor, the used ticket, --filter; a hook without a ticket asks
	// nothing.
	if hit, miss, bypass := results(r.cache); hit != 0 || miss != 0 || bypass != 5 {
		t.Fatalf("%v hits, %v misses, %v bypasses; want 0, 0, 5", hit, miss, bypass)
	}
}

// TestKey: every part of a request changes the key.
func TestKey(t *testing.T) {
	base := key("group/app", 2, []string{"pack-objects", "--revs"}, []byte("a\n"))
	for name, k := range map[string]string{
		"project":  key("group/other", 2, []string{"pack-objects", "--revs"}, []byte("a\n")),
		"version":  key("group/app", 0, []string{"pack-objects", "--revs"}, []byte("a\n")),
		"args":     key("group/app", 2, []string{"pack-objects", "--revs", "--thin"}, []byte("a\n")),
		"stdin":    key("group/app", 2, []string{"pack-objects", "--revs"}, []byte("b\n")),
		"boundary": key("group/app", 2, []string{"pack-objects", "--revsa\n"}, nil),
	} {
		if k == base {
			t.Errorf("another %s, the same key", name)
		}
	}
}
