package refs

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// Pins, finished pins and adopted refs recorded under one max-age follow a
// smaller one as soon as a process with it sweeps: deadlines are computed
// from created_at and first-seen with the max-age in force, not stored.
func TestMaxAgeInForceApplies(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.svc.Policy = Policy{Retention: time.Hour, MaxAge: time.Hour}
	e.pin(t, 1, e.c1)
	e.pin(t, 2, e.c1)
	if _, err := e.svc.Finish(ctx, e.p, 2); err != nil {
		t.Fatal(err)
	}
	e.git.PipelineRefs(t, 100, 1, string(e.c1)) // a ref nobody pinned
	if res, err := e.svc.SweepAll(ctx); err != nil || res.Adopted != 1 {
		t.Fatalf("first sweep = %+v, %v; want the ref adopted", res, err)
	}
	e.clock.Advance(2 * time.Minute)
	if res, err := e.svc.Sweep(ctx); err != nil || res.Deleted != 0 {
		t.Fatalf("sweep under max-age 1h = %+v, %v; want nothing deleted", res, err)
	}

	// A restart with --max-age 1m, over the same Redis and repositories.
	restarted := &Service{Repos: e.svc.Repos, Store: e.svc.Store, Clock: e.clock,
		Policy: Policy{Retention: time.Hour, MaxAge: time.Minute}}
	res, err := restarted.Sweep(ctx)
	if err != nil || res.Deleted != 3 || res.Kept != 0 {
		t.Fatalf("sweep under max-age 1m = %+v, %v; want all 3 deleted", res, err)
	}
	if refs := e.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("refs left: %v", refs)
	}
	// Deleted records are kept for the max-age in force too.
	e.clock.Advance(2 * time.Minute)
	if res, err := restarted.Sweep(ctx); err != nil || res.Purged != 3 {
		t.Fatalf("purge under max-age 1m = %+v, %v; want 3 purged", res, err)
	}
}

// The next due time a run reports follows the max-age in force as well.
func TestNextDueFollowsMaxAgeInForce(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	pin, _ := e.pin(t, 1, e.c1)
	res, err := e.svc.ExpireDue(ctx, e.p)
	if err != nil || !res.NextDue.Equal(pin.CreatedAt.Add(testMaxAge)) {
		t.Fatalf("ExpireDue = %+v, %v; want next due at created + %v", res, err, testMaxAge)
	}
	e.svc.Policy.MaxAge = time.Minute
	res, err = e.svc.ExpireDue(ctx, e.p)
	if err != nil || !res.NextDue.Equal(pin.CreatedAt.Add(time.Minute)) {
		t.Fatalf("ExpireDue under max-age 1m = %+v, %v; want next due at created + 1m", res, err)
	}
}

// One deleter per project at a time: another that comes while it holds the
// lease leaves a note and deletes nothing itself, and the holder goes round
// again for it before letting go.
func TestExpiryLeaseLeavesTheWorkToItsHolder(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	st := e.svc.Store
	held, err := newExpiryLease(st, e.p, "holder").acquire(ctx)
	if err != nil || !held {
		t.Fatalf("AcquireExpiry = %v, %v", held, err)
	}
	e.pin(t, 1, e.c1)
	if _, err := e.svc.Finish(ctx, e.p, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * testRetention)
	res, err := e.svc.ExpireDue(ctx, e.p)
	if err != nil || res.Deleted != 0 {
		t.Fatalf("ExpireDue while another holds the lease = %+v, %v; want nothing deleted", res, err)
	}
	if _, ok := e.refSHA(t, 1); !ok {
		t.Fatal("ref deleted by a deleter without the lease")
	}
	again, err := newExpiryLease(st, e.p, "holder").release(ctx, false)
	if err != nil || !again {
		t.Fatalf("ReleaseExpiry = %v, %v; want the note seen", again, err)
	}
	// The holder's next round deletes it; then the lease goes.
	res, err = e.svc.ExpireDue(ctx, e.p)
	if err != nil || res.Deleted != 0 {
		t.Fatalf("ExpireDue while the holder goes round again = %+v, %v", res, err)
	}
	var sweep SweepResult
	if err := e.svc.expireAllDue(ctx, e.p, &sweep); err != nil || sweep.Deleted != 1 {
		t.Fatalf("holder's round = %+v, %v; want 1 deleted", sweep, err)
	}
	if again, err := newExpiryLease(st, e.p, "holder").release(ctx, false); err != nil || !again {
		t.Fatalf("ReleaseExpiry = %v, %v; want the second note seen", again, err)
	}
	if again, err := newExpiryLease(st, e.p, "holder").release(ctx, false); err != nil || again {
		t.Fatalf("ReleaseExpiry = %v, %v; want it let go", again, err)
	}
	if held, err := newExpiryLease(st, e.p, "next").acquire(ctx); err != nil || !held {
		t.Fatalf("AcquireExpiry after release = %v, %v", held, err)
	}
}

// A project whose repository is gone leaves the set of projects once it has
// no live pin, with every record and key of it; until then it stays, so its
// pins are settled at their time.
func TestGoneProjectIsDropped(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.pin(t, 1, e.c1)
	e.pin(t, 2, e.c1)
	if _, err := e.svc.CloseMergeRequest(ctx, e.p, 12); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, e.p, 2); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(e.git.Dir); err != nil {
		t.Fatal(err)
	}
	// A Root remembers for a second that a repository exists; a fresh one
	// sees it gone at once.
	fresh := &gitops.Root{Dir: e.svc.Repos.Dir}
	t.Cleanup(fresh.Close)
	e.svc.Repos = fresh
	if _, err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	projects, err := e.svc.Store.Projects(ctx)
	if err != nil || len(projects) != 1 {
		t.Fatalf("projects with a live pin = %v, %v; want it kept", projects, err)
	}
	e.clock.Advance(testMaxAge)
	if res, err := e.svc.Sweep(ctx); err != nil || res.FailedProjects != 0 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	projects, err = e.svc.Store.Projects(ctx)
	if err != nil || len(projects) != 0 {
		t.Fatalf("projects after its last pin went = %v, %v; want none", projects, err)
	}
	if keys := e.redis.Client(t).Keys(ctx, "refkeeper:{group/app}:*").Val(); len(keys) != 0 {
		t.Fatalf("keys of the gone project left: %v", keys)
	}
	var nf *ProjectNotFoundError
	if _, err := e.svc.Get(ctx, e.p, 1); !errors.As(err, &nf) {
		t.Fatalf("Get = %v, want ProjectNotFoundError", err)
	}
}

// A note left for the holder of the expiry lease lives as long as the lease:
// renewing the lease renews the note, so a round longer than the lease's
// time does not lose it.
func TestRenewingTheExpiryLeaseKeepsTheNote(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	st := e.svc.Store
	if ok, err := newExpiryLease(st, e.p, "holder").acquire(ctx); err != nil || !ok {
		t.Fatalf("first AcquireExpiry = %v, %v", ok, err)
	}
	if ok, err := newExpiryLease(st, e.p, "other").acquire(ctx); err != nil || ok {
		t.Fatalf("second AcquireExpiry = %v, %v; want the note left", ok, err)
	}
	rdb := e.redis.Client(t)
	_, note := st.Keys.ExpiryLease(e.p)
	// As if most of the note's time had passed during the holder's round.
	if err := rdb.PExpire(ctx, note, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := newExpiryLease(st, e.p, "holder").renew(ctx); err != nil || !ok {
		t.Fatalf("RenewExpiry = %v, %v", ok, err)
	}
	if left, err := rdb.PTTL(ctx, note).Result(); err != nil || left <= time.Second {
		t.Fatalf("the note has %v left after the lease was renewed (%v); want it renewed with the lease", left, err)
	}
	if again, err := newExpiryLease(st, e.p, "holder").release(ctx, false); err != nil || !again {
		t.Fatalf("ReleaseExpiry = %v, %v; want the holder sent round again", again, err)
	}
}

// TestSweepReconcilesAllAfterRedisLostData: Redis restarts from a snapshot
// older than its last writes, so a pin it acknowledged is gone while the
// projects' reconcile markers, taken before, came back. The next periodic
// sweep sees the new server and reconciles every project anyway.
func TestSweepReconcilesAllAfterRedisLostData(t *testing.T) {
	e := newEnv(t)
	e.svc.ReconcileInterval = time.Hour
	ctx := t.Context()
	e.pin(t, 1, e.c1)
	if _, err := e.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.redis.Client(t).Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	e.pin(t, 2, e.c1)
	e.redis.Kill(t)
	e.redis.Start(t) // from the snapshot: pin 2 is gone, the marker is there

	res, err := e.svc.Sweep(ctx)
	if err != nil || res.Adopted != 1 || res.Kept != 2 {
		t.Fatalf("sweep after Redis lost pin 2 = %+v, %v; want it adopted", res, err)
	}
	if res, _ := e.svc.Sweep(ctx); res.Adopted != 0 || res.Kept != 2 {
		t.Fatalf("next sweep = %+v; want no listing (the reconcile is recorded)", res)
	}
}
