package refs

import (
	"os"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/testdata"
)

// The whole pin lifecycle runs on a real three-master Redis Cluster: every
// script is handed its keys, and all keys of a project share its hash tag,
// so no call meets CROSSSLOT, and the projects' keys live on different
// masters.
func TestPinLifecycleOnRedisCluster(t *testing.T) {
	cluster := testdata.StartCluster(t)
	dir := t.TempDir()
	g := testdata.NewMergeRequestProject(t, dir)
	// A second project, whose keys hash to a slot on another master.
	other := testdata.NewBareRepo(t, dir, "other/app")
	otherFirst := other.Commit(t, "main", map[string]string{"a.txt": "1\n"}, "first")
	otherSecond := other.Commit(t, "main", map[string]string{"a.txt": "2\n"}, "second")
	clock := &fakeClock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	root := &gitops.Root{Dir: dir}
	t.Cleanup(root.Close)
	st := &Store{Client: cluster.Client(t)}
	svc := &Service{Repos: root, Store: st, Policy: Policy{Retention: testRetention, MaxAge: testMaxAge}, Clock: clock}
	e := &env{svc: svc, clock: clock, git: g.Repo, p: "group/app", c1: ObjectID(g.First), c2: ObjectID(g.Second)}
	q := Project("other/app")
	ctx := t.Context()
	masterOf := func(p Project) string {
		node, err := cluster.Client(t).MasterForKey(ctx, st.Keys.Pin(p, 1))
		if err != nil {
			t.Fatal(err)
		}
		return node.Options().Addr
	}
	if masterOf(e.p) == masterOf(q) {
		t.Fatalf("%s and %s live on one master; the test wants two", e.p, q)
	}

	// Pin, re-pin, pin by merge request, finish.
	if _, created := e.pin(t, 1, e.c1); !created {
		t.Fatal("first pin created no ref")
	}
	if pin, created := e.pin(t, 1, e.c1); created || pin.State != StatePinned {
		t.Fatalf("re-pin = %+v, created %v", pin, created)
	}
	byMR, _, err := svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 2, MergeRequestIID: 12})
	if err != nil || byMR.SHA != ObjectID(g.Merge) {
		t.Fatalf("pin by merge request = %+v, %v; want %s", byMR, err, g.Merge)
	}
	if _, _, err := svc.Pin(ctx, PinRequest{Project: q, PipelineID: 1, SHA: ObjectID(otherFirst)}); err != nil {
		t.Fatalf("pin in a second project: %v", err)
	}
	finished, err := svc.Finish(ctx, e.p, 1)
	if err != nil || finished.State != StateFinished || !finished.ExpiresAt.Equal(clock.Now().Add(testRetention)) {
		t.Fatalf("Finish = %+v, %v", finished, err)
	}
	pins, next, err := svc.List(ctx, e.p, "", "", 10)
	if err != nil || len(pins) != 2 || next != "" {
		t.Fatalf("List = %d pins, next %q, %v; want 2", len(pins), next, err)
	}

	// Closing the merge request marks its pin; finishing it then expires it
	// at once.
	closed, err := svc.CloseMergeRequest(ctx, e.p, 12)
	if err != nil || len(closed) != 1 || closed[0].PipelineID != 2 {
		t.Fatalf("CloseMergeRequest = %+v, %v; want pipeline 2", closed, err)
	}
	if pin, err := svc.Finish(ctx, e.p, 2); err != nil || !pin.ExpiresAt.Equal(clock.Now()) {
		t.Fatalf("Finish of a closed merge request's pin = %+v, %v; want expiring now", pin, err)
	}

	// Expiry: pipeline 2 is due now, pipeline 1 after the retention.
	res, err := svc.ExpireDue(ctx, e.p)
	if err != nil || res.Deleted != 1 || !res.NextDue.Equal(finished.ExpiresAt) {
		t.Fatalf("ExpireDue = %+v, %v; want 1 deleted, next due %v", res, err, finished.ExpiresAt)
	}
	if _, ok := e.refSHA(t, 2); ok {
		t.Fatal("ref of the expired pin is still there")
	}
	clock.Advance(testRetention)
	if res, err := svc.ExpireDue(ctx, e.p); err != nil || res.Deleted != 1 {
		t.Fatalf("ExpireDue after retention = %+v, %v; want 1 deleted", res, err)
	}

	// Delete now: claim, delete under git's lock, commit.
	e.pin(t, 3, e.c2)
	if err := svc.Delete(ctx, e.p, 3); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if pin, err := svc.Get(ctx, e.p, 3); err != nil || pin.State != StateDeleted {
		t.Fatalf("after Delete = %+v, %v", pin, err)
	}
	// A ref without a record: Delete leaves a tombstone, claimed, first.
	g.Git(t, "update-ref", "refs/pipelines/4", string(e.c1))
	if err := svc.Delete(ctx, e.p, 4); err != nil {
		t.Fatalf("Delete of an unrecorded ref: %v", err)
	}

	// Sweep: a ref made by hand is adopted; after max-age every record is
	// purged and the adopted ref deleted.
	g.Git(t, "update-ref", "refs/pipelines/5", string(e.c1))
	swept, err := svc.SweepAll(ctx)
	if err != nil || swept.Adopted != 1 || swept.FailedProjects != 0 {
		t.Fatalf("SweepAll = %+v, %v; want 1 adopted", swept, err)
	}
	clock.Advance(testMaxAge + time.Minute)
	swept, err = svc.SweepAll(ctx)
	if err != nil || swept.Deleted != 2 || swept.FailedProjects != 0 {
		t.Fatalf("SweepAll after max-age = %+v, %v; want the adopted and the other project's ref deleted", swept, err)
	}
	purged := swept.Purged // the records deleted before the first sweep
	clock.Advance(testMaxAge + time.Minute)
	swept, err = svc.SweepAll(ctx)
	if purged += swept.Purged; err != nil || purged != 6 || swept.Purged == 0 {
		t.Fatalf("SweepAll after another max-age = %+v, %v; want all 6 records purged over both sweeps (%d)", swept, err, purged)
	}

	// A project whose repository is gone is dropped with all its keys.
	if _, _, err := svc.Pin(ctx, PinRequest{Project: q, PipelineID: 9, SHA: ObjectID(otherSecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Finish(ctx, q, 9); err != nil {
		t.Fatal(err)
	}
	clock.Advance(testMaxAge + time.Minute)
	if err := os.RemoveAll(other.Dir); err != nil {
		t.Fatal(err)
	}
	fresh := &Service{Repos: &gitops.Root{Dir: dir}, Store: st, Policy: svc.Policy, Clock: clock}
	t.Cleanup(fresh.Repos.Close)
	for range 2 { // expire, then drop
		if _, err := fresh.SweepAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	projects, err := st.Projects(ctx)
	if err != nil || len(projects) != 1 || projects[0] != e.p {
		t.Fatalf("projects after the other's repository went = %v, %v; want only %s", projects, err, e.p)
	}

	// Removing a project's records scans every master.
	e.pin(t, 7, e.c1)
	if err := st.PurgeProject(ctx, e.p); err != nil {
		t.Fatalf("PurgeProject: %v", err)
	}
	if _, ok, err := st.Get(ctx, e.p, 7); err != nil || ok {
		t.Fatalf("record after PurgeProject: %v, %v", ok, err)
	}
	if n, err := st.Count(ctx, e.p); err != nil || n[StatePinned] != 0 {
		t.Fatalf("Count after PurgeProject = %v, %v", n, err)
	}
}

// The expiry lease and its note work on a cluster: they are a Lease and a
// script handed both keys.
func TestExpiryLeaseOnRedisCluster(t *testing.T) {
	st := &Store{Client: testdata.StartCluster(t).Client(t)}
	ctx := t.Context()
	p := Project("group/app")
	holder, other := newExpiryLease(st, p, "holder"), newExpiryLease(st, p, "other")
	if ok, err := holder.acquire(ctx); err != nil || !ok {
		t.Fatalf("acquire = %v, %v", ok, err)
	}
	if ok, err := other.acquire(ctx); err != nil || ok {
		t.Fatalf("second acquire = %v, %v; want the note left", ok, err)
	}
	if ok, err := holder.renew(ctx); err != nil || !ok {
		t.Fatalf("renew = %v, %v", ok, err)
	}
	if again, err := holder.release(ctx, false); err != nil || !again {
		t.Fatalf("release = %v, %v; want to go round again", again, err)
	}
	if again, err := holder.release(ctx, false); err != nil || again {
		t.Fatalf("second release = %v, %v; want it let go", again, err)
	}
	if ok, err := other.acquire(ctx); err != nil || !ok {
		t.Fatalf("acquire after release = %v, %v", ok, err)
	}
}
