package mirrors

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// replica is one process's view of a shared repos root and Redis.
type replica struct {
	root     *gitops.Root
	projects *Projects
}

func newReplica(t *testing.T, dir, creds string, store *refs.Store) *replica {
	t.Helper()
	root := &gitops.Root{Dir: dir}
	t.Cleanup(root.Close)
	policy, err := ParseUpstreamPolicy(testdata.LoopbackUpstreams)
	if err != nil {
		t.Fatal(err)
	}
	p := &Projects{
		Repos:       root,
		Fetcher:     &gitops.Fetcher{Root: root, Lease: &FetchLeases{Store: store, TTL: time.Minute}},
		Store:       store,
		Credentials: &CredentialFile{Path: creds},
		Policy:      policy,
	}
	t.Cleanup(p.Close)
	return &replica{root: root, projects: p}
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReplicasShareMirrorFetches(t *testing.T) {
	dir := t.TempDir()
	u := testdata.StartUpstream(t)
	creds := u.CredentialsFile(t, "up")
	store := &refs.Store{Client: testdata.StartRedis(t).Client(t)}
	a, b := newReplica(t, dir, creds, store), newReplica(t, dir, creds, store)
	ctx := context.Background()
	name := refs.Project("mirrors/gh")
	if _, _, err := a.projects.Register(ctx, MirrorRequest{Project: name, Upstream: u.URL(), Host: "github", Credential: "up"}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the clone", func() bool {
		pi, err := b.projects.Get(ctx, name)
		return err == nil && pi.State == ProjectReady
	})
	mirrorDir, err := a.root.RepoPath(name)
	if err != nil {
		t.Fatal(err)
	}
	before := u.Fetches()

	pin := func(r *replica) error {
		repo, err := r.root.Open(name)
		if err != nil {
			return err
		}
		mergeRef, err := refs.HostGitHub.PinMergeRef(1)
		if err != nil {
			return err
		}
		return r.projects.FetchForPin(ctx, repo, refs.PinRequest{Project: name, PipelineID: 1, MergeRequestIID: 1}, mergeRef)
	}
	// A's first pin holds the lease, its fetch hanging upstream; then
	// more pins arrive on both replicas.
	u.Stall()
	const perReplica = 15
	errs := make(chan error, 2*perReplica)
	var wg sync.WaitGroup
	call := func(r *replica) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- pin(r) }()
	}
	call(a)
	pollUntil(t, "A's fetch at the upstream", func() bool { return u.Stalled() > 0 })
	for range perReplica - 1 {
		call(a)
	}
	for range perReplica {
		call(b)
	}
	pollUntil(t, "every pin in line", func() bool {
		na, _ := a.projects.Fetcher.Queued(mirrorDir)
		nb, settled := b.projects.Fetcher.Queued(mirrorDir)
		return na == perReplica-1 && nb == perReplica && settled
	})
	u.Release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("pin: %v", err)
		}
	}
	if got := u.Fetches() - before; got > 2 {
		t.Errorf("%d pins on two replicas caused %d upstream fetches, want at most 2", 2*perReplica, got)
	}
	raw, err := exec.Command("git", "--git-dir", mirrorDir, "rev-parse", "refs/pull/1/merge").Output()
	if out := strings.TrimSpace(string(raw)); err != nil || out != u.Merge {
		t.Errorf("refs/pull/1/merge = %q (%v), want %s", out, err, u.Merge)
	}
}
