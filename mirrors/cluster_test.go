package mirrors

import (
	"slices"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// The mirrors' leases run on a real three-master Redis Cluster: each is a
// refs.Lease whose script is handed every key it touches.
func TestLeasesOnRedisCluster(t *testing.T) {
	testdata.GitAvailable(t)
	cluster := testdata.StartCluster(t)
	store := &refs.Store{Client: cluster.Client(t)}
	ctx := t.Context()

	t.Run("fetch lease", func(t *testing.T) {
		leases := &FetchLeases{Store: store, TTL: time.Minute}
		name := gitops.ProjectName("mirrors/gh")
		first, err := leases.Poll(ctx, name)
		if err != nil || !first.Taken || first.Begun != 1 || first.Done != 0 {
			t.Fatalf("first Poll = %+v, %v; want the lease taken for fetch 1", first, err)
		}
		second, err := leases.Poll(ctx, name)
		if err != nil || second.Taken || second.Begun != 1 {
			t.Fatalf("second Poll = %+v, %v; want fetch 1 seen under way", second, err)
		}
		specs := []string{"+refs/pull/1/merge:refs/pull/1/merge"}
		first.Release(true, specs)
		after, err := leases.Poll(ctx, name)
		if err != nil || !after.Taken || after.Begun != 2 || after.Done != 1 || !slices.Equal(after.DoneRefspecs, specs) {
			t.Fatalf("Poll after the release = %+v, %v; want fetch 1 done with its refspecs, fetch 2 taken", after, err)
		}
		after.Release(false, nil)
	})

	t.Run("housekeeping lease", func(t *testing.T) {
		dir := t.TempDir()
		mirror := gitops.ProjectName("mirrors/app")
		packedMirror(t, dir, mirror, 2)
		root := &gitops.Root{Dir: dir}
		t.Cleanup(root.Close)
		h := &Housekeeping{Repos: root, Store: store, Interval: time.Hour}
		if ran, err := h.Run(ctx, mirror); err != nil || !ran {
			t.Fatalf("first Run = %v, %v; want it run", ran, err)
		}
		if ran, err := h.Run(ctx, mirror); err != nil || ran {
			t.Fatalf("Run within the interval = %v, %v; want it skipped", ran, err)
		}
	})
}
