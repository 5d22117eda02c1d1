package refs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/testdata"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recordingScheduler remembers what the service asked to schedule.
type recordingScheduler struct {
	mu sync.Mutex
	at []time.Time
}

func (r *recordingScheduler) ScheduleExpiry(_ context.Context, _ Project, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, at)
	return nil
}

func (r *recordingScheduler) last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.at) == 0 {
		return time.Time{}
	}
	return r.at[len(r.at)-1]
}

type env struct {
	svc    *Service
	clock  *fakeClock
	sched  *recordingScheduler
	git    *testdata.Repo
	redis  *testdata.Redis
	p      Project
	c1, c2 ObjectID
	merge  ObjectID
}

const (
	testRetention = time.Hour
	testMaxAge    = 24 * time.Hour
)

func newEnv(t *testing.T) *env {
	t.Helper()
	return newObservedEnv(t, nil)
}

// newObservedEnv is newEnv with obs told of every git transaction.
func newObservedEnv(t *testing.T, obs gitops.TransactionObserver) *env {
	t.Helper()
	dir := t.TempDir()
	g := testdata.NewMergeRequestProject(t, dir)
	r := testdata.StartRedis(t)
	clock := &fakeClock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	sched := &recordingScheduler{}
	root := &gitops.Root{Dir: dir, Observer: obs}
	t.Cleanup(root.Close)
	svc := &Service{
		Repos:     root,
		Store:     &Store{Client: r.Client(t)},
		Policy:    Policy{Retention: testRetention, MaxAge: testMaxAge},
		Clock:     clock,
		Scheduler: sched,
	}
	return &env{svc: svc, clock: clock, sched: sched, git: g.Repo, redis: r, p: "group/app",
		c1: ObjectID(g.First), c2: ObjectID(g.Second), merge: ObjectID(g.Merge)}
}

func (e *env) pin(t *testing.T, id PipelineID, sha ObjectID) (Pin, bool) {
	t.Helper()
	pin, created, err := e.svc.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: id, SHA: sha})
	if err != nil {
		t.Fatalf("Pin(%d, %s): %v", id, sha.Short(), err)
	}
	return pin, created
}

func (e *env) refSHA(t *testing.T, id PipelineID) (ObjectID, bool) {
	t.Helper()
	sha, ok := e.git.RefSHA(t, id.Ref().String())
	return ObjectID(sha), ok
}

func TestPinLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	pin, created := e.pin(t, 7, e.c1)
	if !created || pin.State != StatePinned || pin.SHA != e.c1 || !pin.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("first pin = %+v, created=%v", pin, created)
	}
	if _, created := e.pin(t, 7, e.c1); created {
		t.Fatal("re-pin at the same SHA reported a creation")
	}
	_, _, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 7, SHA: e.c2})
	var conflict *RefConflictError
	if !errors.As(err, &conflict) || conflict.Pinned != e.c1 {
		t.Fatalf("pin at another SHA = %v, want RefConflictError", err)
	}
	if sha, _ := e.refSHA(t, 7); sha != e.c1 {
		t.Fatalf("ref moved to %s", sha)
	}

	e.clock.Advance(time.Minute)
	finished, err := e.svc.Finish(ctx, e.p, 7)
	if err != nil || finished.State != StateFinished {
		t.Fatalf("Finish = %+v, %v", finished, err)
	}
	if want := finished.FinishedAt.Add(testRetention); !finished.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at = %v, want %v", finished.ExpiresAt, want)
	}
	if at := e.sched.last(); !at.Equal(finished.ExpiresAt) {
		t.Fatalf("scheduled at %v, want %v", at, finished.ExpiresAt)
	}
	e.clock.Advance(time.Minute)
	again, _ := e.svc.Finish(ctx, e.p, 7)
	if !again.FinishedAt.Equal(finished.FinishedAt) {
		t.Fatalf("second finish moved finished_at to %v", again.FinishedAt)
	}

	// Within retention the deletion task finds nothing due.
	if _, err := e.svc.ExpireDue(ctx, e.p); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 7); !ok {
		t.Fatal("ref deleted before expires_at")
	}

	// A retried job re-opens the pin and calls its deletion off.
	reopened, created := e.pin(t, 7, e.c1)
	if created || reopened.State != StatePinned || !reopened.ExpiresAt.IsZero() {
		t.Fatalf("re-pin of a finished pin = %+v, created=%v", reopened, created)
	}
	e.clock.Advance(2 * testRetention)
	if _, err := e.svc.ExpireDue(ctx, e.p); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 7); !ok {
		t.Fatal("a stale deletion task deleted a re-opened pin's ref")
	}

	// Finished again, and past retention: deleted.
	if _, err := e.svc.Finish(ctx, e.p, 7); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testRetention)
	if _, err := e.svc.ExpireDue(ctx, e.p); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 7); ok {
		t.Fatal("ref still there after expires_at")
	}
	gone, err := e.svc.Get(ctx, e.p, 7)
	if err != nil || gone.State != StateDeleted {
		t.Fatalf("Get after deletion = %+v, %v", gone, err)
	}
	// Running the task again changes nothing.
	if _, err := e.svc.ExpireDue(ctx, e.p); err != nil {
		t.Fatal(err)
	}

	// A retried pipeline pins again: a new ref, also at another SHA.
	repinned, created := e.pin(t, 7, e.c2)
	if !created || repinned.State != StatePinned || repinned.SHA != e.c2 {
		t.Fatalf("pin after deletion = %+v, created=%v", repinned, created)
	}
}

func TestPinValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tree := ObjectID(e.git.TreeOf(t, string(e.c1)))
	tests := []struct {
		name string
		req  PinRequest
		want any
	}{
		{"no sha, no merge request", PinRequest{Project: e.p, PipelineID: 1}, &InvalidInputError{}},
		{"missing commit", PinRequest{Project: e.p, PipelineID: 1, SHA: "1234567890123456789012345678901234567890"}, &CommitNotFoundError{}},
		{"tree", PinRequest{Project: e.p, PipelineID: 1, SHA: tree}, &CommitNotFoundError{}},
		{"no merge ref", PinRequest{Project: e.p, PipelineID: 1, MergeRequestIID: 99}, &MergeRefNotFoundError{}},
		{"no project", PinRequest{Project: "nope", PipelineID: 1, SHA: e.c1}, &ProjectNotFoundError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.svc.Pin(ctx, tt.req)
			if err == nil || !sameType(err, tt.want) {
				t.Fatalf("Pin = %v, want %T", err, tt.want)
			}
		})
	}
	if refs := e.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("bad requests left refs: %v", refs)
	}
}

func sameType(err error, want any) bool {
	switch want.(type) {
	case *InvalidInputError:
		var e *InvalidInputError
		return errors.As(err, &e)
	case *CommitNotFoundError:
		var e *CommitNotFoundError
		return errors.As(err, &e)
	case *MergeRefNotFoundError:
		var e *MergeRefNotFoundError
		return errors.As(err, &e)
	case *ProjectNotFoundError:
		var e *ProjectNotFoundError
		return errors.As(err, &e)
	}
	return false
}

func TestPinByMergeRequest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	pin, created, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 3, MergeRequestIID: 12})
	if err != nil || !created || pin.SHA != e.merge || pin.MergeRequestIID != 12 {
		t.Fatalf("pin by merge request = %+v, %v, %v", pin, created, err)
	}
	// The target branch moves and the merge ref is recomputed: the pin stays,
	// and asking again for the same pipeline answers the pin it has.
	e.git.Commit(t, "main", map[string]string{"c.txt": "three\n"}, "third")
	moved := e.git.SetMergeRequestRef(t, 12, "main", "feature")
	if ObjectID(moved) == e.merge {
		t.Fatal("merge ref did not move")
	}
	again, created, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 3, MergeRequestIID: 12})
	if err != nil || created || again.SHA != e.merge {
		t.Fatalf("second pin by merge request = %+v, %v, %v", again, created, err)
	}
	if sha, _ := e.refSHA(t, 3); sha != e.merge {
		t.Fatalf("pipeline ref moved to %s", sha)
	}
}

func TestCloseMergeRequest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, id := range []PipelineID{1, 2} {
		if _, _, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: id, SHA: e.c1, MergeRequestIID: 12}); err != nil {
			t.Fatal(err)
		}
	}
	e.pin(t, 3, e.c1) // another merge request's pipeline
	if _, err := e.svc.Finish(ctx, e.p, 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	pins, err := e.svc.CloseMergeRequest(ctx, e.p, 12)
	if err != nil || len(pins) != 2 {
		t.Fatalf("CloseMergeRequest = %v, %v", pins, err)
	}
	for _, pin := range pins {
		if pin.PipelineID == 1 && !pin.ExpiresAt.Equal(e.clock.Now()) {
			t.Fatalf("finished pin expires at %v, want now", pin.ExpiresAt)
		}
	}
	if _, err := e.svc.ExpireDue(ctx, e.p); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 1); ok {
		t.Fatal("finished pin of a closed merge request kept its ref")
	}
	// The pinned one expires as soon as it finishes.
	finished, err := e.svc.Finish(ctx, e.p, 2)
	if err != nil || !finished.ExpiresAt.Equal(finished.FinishedAt) {
		t.Fatalf("finish after close = %+v, %v", finished, err)
	}
	res, err := e.svc.Sweep(ctx)
	if err != nil || res.Deleted != 1 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	if _, ok := e.refSHA(t, 2); ok {
		t.Fatal("pinned-then-finished pin of a closed merge request kept its ref")
	}
	if _, ok := e.refSHA(t, 3); !ok {
		t.Fatal("another merge request's pin lost its ref")
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.pin(t, 5, e.c1)
	if err := e.svc.Delete(ctx, e.p, 5); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 5); ok {
		t.Fatal("ref still there")
	}
	if err := e.svc.Delete(ctx, e.p, 5); err != nil {
		t.Fatalf("second delete = %v, want done", err)
	}
	var nf *PinNotFoundError
	if err := e.svc.Delete(ctx, e.p, 6); !errors.As(err, &nf) {
		t.Fatalf("delete of nothing = %v, want PinNotFoundError", err)
	}
	// A ref without a pin is deleted too.
	e.git.Git(t, "update-ref", "refs/pipelines/8", string(e.c1))
	if err := e.svc.Delete(ctx, e.p, 8); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 8); ok {
		t.Fatal("unpinned ref still there")
	}
}

// TestRepinWinsAgainstDeletion runs the deletion protocol step by step with a
// re-pin in each gap: the ref always exists at the end and the pin is pinned.
func TestRepinWinsAgainstDeletion(t *testing.T) {
	for _, gap := range []string{"after claim", "after ref deleted", "after commit"} {
		t.Run(gap, func(t *testing.T) {
			e := newEnv(t)
			ctx := t.Context()
			token := "test-token"
			claimed := e.expiredAndClaimed(t, 4, token)
			repo, err := e.svc.Repos.Open(e.p)
			if err != nil {
				t.Fatal(err)
			}
			if gap == "after claim" {
				e.pin(t, 4, e.c1)
			}
			if _, err := repo.Delete(t.Context(), PipelineID(4).Ref(), e.c1); err != nil {
				t.Fatal(err)
			}
			if gap == "after ref deleted" {
				e.pin(t, 4, e.c1)
			}
			if err := e.svc.commitDeletes(ctx, repo, e.p, []Pin{claimed}, token); err != nil {
				t.Fatal(err)
			}
			if gap == "after commit" {
				e.pin(t, 4, e.c1)
			}
			pin, err := e.svc.Get(ctx, e.p, 4)
			if err != nil || pin.State != StatePinned {
				t.Fatalf("pin = %+v, %v; want pinned", pin, err)
			}
			if sha, ok := e.refSHA(t, 4); !ok || sha != e.c1 {
				t.Fatalf("ref = %s, %v; want it at %s", sha, ok, e.c1)
			}
		})
	}
}

func TestSweepAdoptsRestoresAndEnforcesMaxAge(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// Refs nobody pinned (made by hand, or their records lost with Redis).
	e.git.PipelineRefs(t, 100, 3, string(e.c1))
	e.pin(t, 1, e.c1)
	e.pin(t, 2, e.c2)
	// The ref of a live pin vanishes.
	e.git.Git(t, "update-ref", "-d", "refs/pipelines/2")
	e.clock.Advance(time.Second)

	res, err := e.svc.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Adopted != 3 || res.Restored != 1 || res.Deleted != 0 || res.Kept != 5 {
		t.Fatalf("first sweep = %+v", res)
	}
	if sha, ok := e.refSHA(t, 2); !ok || sha != e.c2 {
		t.Fatal("vanished ref not restored")
	}
	adopted, err := e.svc.Get(ctx, e.p, 100)
	if err != nil || !adopted.Adopted || adopted.State != StatePinned {
		t.Fatalf("adopted pin = %+v, %v", adopted, err)
	}
	// A second sweep adopts nothing new.
	if res, _ := e.svc.Sweep(ctx); res.Adopted != 0 || res.Deleted != 0 {
		t.Fatalf("second sweep = %+v", res)
	}

	// Just before max-age nothing goes; after it, everything goes.
	e.clock.Advance(testMaxAge - 2*time.Second)
	if res, _ := e.svc.Sweep(ctx); res.Deleted != 0 {
		t.Fatalf("sweep before max-age deleted %d", res.Deleted)
	}
	e.clock.Advance(2 * time.Second)
	res, err = e.svc.Sweep(ctx)
	if err != nil || res.Deleted != 5 {
		t.Fatalf("sweep after max-age = %+v, %v", res, err)
	}
	if refs := e.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("refs left after max-age: %v", refs)
	}
	// Deleted records stay readable for max-age, then are purged.
	if pin, err := e.svc.Get(ctx, e.p, 1); err != nil || pin.State != StateDeleted {
		t.Fatalf("deleted pin = %+v, %v", pin, err)
	}
	e.clock.Advance(testMaxAge)
	res, err = e.svc.Sweep(ctx)
	if err != nil || res.Purged != 5 {
		t.Fatalf("purge sweep = %+v, %v", res, err)
	}
	var nf *PinNotFoundError
	if _, err := e.svc.Get(ctx, e.p, 1); !errors.As(err, &nf) {
		t.Fatalf("Get after purge = %v", err)
	}
	keys := e.redis.Client(t).Keys(ctx, "refkeeper:{group/app}:*").Val()
	if len(keys) != 0 {
		t.Fatalf("records left after purge: %v", keys)
	}
}

func TestSweepAfterRedisLostEverything(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.pin(t, 1, e.c1)
	e.pin(t, 2, e.c1)
	e.redis.FlushAll(t)
	res, err := e.svc.Sweep(ctx)
	if err != nil || res.Adopted != 2 || res.Deleted != 0 {
		t.Fatalf("sweep after flush = %+v, %v", res, err)
	}
	e.clock.Advance(testMaxAge - time.Second)
	if res, _ := e.svc.Sweep(ctx); res.Deleted != 0 {
		t.Fatalf("deleted %d refs before max-age", res.Deleted)
	}
	e.clock.Advance(time.Second)
	if res, _ := e.svc.Sweep(ctx); res.Deleted != 2 {
		t.Fatalf("deleted %d refs at max-age, want 2", res.Deleted)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for id := PipelineID(1); id <= 5; id++ {
		e.pin(t, id, e.c1)
		e.clock.Advance(time.Second)
	}
	if _, err := e.svc.Finish(ctx, e.p, 2); err != nil {
		t.Fatal(err)
	}
	var got []PipelineID
	cursor := ""
	for pages := 0; ; pages++ {
		pins, next, err := e.svc.List(ctx, e.p, "", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pins {
			got = append(got, p.PipelineID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	want := []PipelineID{5, 4, 3, 2, 1}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("listed %v, want %v (newest first)", got, want)
		}
	}
	finished, _, err := e.svc.List(ctx, e.p, StateFinished, "", 100)
	if err != nil || len(finished) != 1 || finished[0].PipelineID != 2 {
		t.Fatalf("finished = %v, %v", finished, err)
	}
	var bad *InvalidInputError
	if _, _, err := e.svc.List(ctx, e.p, "", "garbage", 10); !errors.As(err, &bad) {
		t.Fatalf("bad cursor = %v", err)
	}
	if _, _, err := e.svc.List(ctx, e.p, "", "", 1001); !errors.As(err, &bad) {
		t.Fatalf("limit 1001 = %v", err)
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.redis.Stop(t)
	_, _, err := e.svc.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: 1, SHA: e.c1})
	if !IsUnavailable(err) {
		t.Fatalf("Pin with Redis down = %v, want UnavailableError", err)
	}
	if err := e.svc.Ready(t.Context()); !IsUnavailable(err) {
		t.Fatalf("Ready with Redis down = %v", err)
	}
	e.redis.Start(t)
	if _, _, err := e.svc.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: 1, SHA: e.c1}); err != nil {
		t.Fatalf("Pin after Redis came back = %v", err)
	}
}

// TestReconcileInterval: periodic sweeps list the refs on disk once per
// interval (and again as soon as Redis lost the marker); SweepAll always.
func TestReconcileInterval(t *testing.T) {
	e := newEnv(t)
	e.svc.ReconcileInterval = time.Hour
	ctx := t.Context()
	e.git.PipelineRefs(t, 100, 1, string(e.c1))
	if res, err := e.svc.Sweep(ctx); err != nil || res.Adopted != 1 {
		t.Fatalf("first sweep = %+v, %v; want the ref adopted", res, err)
	}
	e.git.PipelineRefs(t, 200, 1, string(e.c1))
	if res, _ := e.svc.Sweep(ctx); res.Adopted != 0 || res.Kept != 1 {
		t.Fatalf("sweep within the interval = %+v; want no listing", res)
	}
	if res, _ := e.svc.SweepAll(ctx); res.Adopted != 1 || res.Kept != 2 {
		t.Fatalf("SweepAll = %+v; want the new ref adopted", res)
	}
	e.redis.FlushAll(t)
	if res, _ := e.svc.Sweep(ctx); res.Adopted != 2 {
		t.Fatalf("sweep after Redis lost everything = %+v; want both adopted again", res)
	}
}

// cancelOnCommit cancels a context the moment git commits a transaction of
// its kind: a client that hangs up right after git did its part.
type cancelOnCommit struct {
	kind   string
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (c *cancelOnCommit) arm(ctx context.Context) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, c.cancel = context.WithCancel(ctx)
	return ctx
}

func (c *cancelOnCommit) Transaction(kind string, _ int, _ time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kind == c.kind && err == nil && c.cancel != nil {
		c.cancel()
	}
}

// A DELETE whose client hangs up once git deleted the ref still marks the
// pin deleted and lets go of its claim: a pin left pinned would keep its
// fetch token working for a ref that is gone.
func TestDeleteSettlesAfterGitCommitted(t *testing.T) {
	obs := &cancelOnCommit{kind: "delete"}
	e := newObservedEnv(t, obs)
	e.pin(t, 5, e.c1)
	ctx := obs.arm(t.Context())
	if err := e.svc.Delete(ctx, e.p, 5); err != nil {
		t.Fatalf("Delete with the client gone after git committed = %v", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the context was not cancelled at the commit")
	}
	if _, ok := e.refSHA(t, 5); ok {
		t.Fatal("ref still there")
	}
	pin, err := e.svc.Get(t.Context(), e.p, 5)
	if err != nil || pin.State != StateDeleted || pin.deletionClaimed {
		t.Fatalf("record = %+v, %v; want deleted, no claim", pin, err)
	}
}

// A PUT whose client hangs up once git created the ref still records the
// pin.
func TestPinSettlesAfterGitCommitted(t *testing.T) {
	obs := &cancelOnCommit{kind: "create"}
	e := newObservedEnv(t, obs)
	ctx := obs.arm(t.Context())
	pin, created, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 6, SHA: e.c1})
	if err != nil || !created || pin.State != StatePinned {
		t.Fatalf("Pin with the client gone after git committed = %+v, %v, %v", pin, created, err)
	}
	if ctx.Err() == nil {
		t.Fatal("the context was not cancelled at the commit")
	}
	got, err := e.svc.Get(t.Context(), e.p, 6)
	if err != nil || got.State != StatePinned || got.SHA != e.c1 {
		t.Fatalf("record = %+v, %v; want pinned at %s", got, err, e.c1)
	}
}

// A deleter that gives re-pinned pins their refs back gives every one back,
// also after one of them failed: the records no longer hold the claim, so
// nothing else would come back for the rest.
func TestCommitDeletesGivesEveryReclaimedRefBack(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const token = "deleter-token"
	for _, id := range []PipelineID{1, 2} {
		e.pin(t, id, e.c1)
		if _, err := e.svc.Store.Claim(ctx, e.p, id, e.clock.Now(), testMaxAge, token, true); err != nil {
			t.Fatal(err)
		}
		// Re-pinned while the claim stood: the deleter must give it back.
		e.pin(t, id, e.c1)
	}
	// The deleter's transaction removed both refs; meanwhile something
	// outside the service wrote pipeline 1's ref at another commit.
	e.git.Git(t, "update-ref", PipelineID(1).Ref().String(), string(e.c2))
	e.git.Git(t, "update-ref", "-d", PipelineID(2).Ref().String())

	repo, err := e.svc.open(e.p)
	if err != nil {
		t.Fatal(err)
	}
	pins := []Pin{{Project: e.p, PipelineID: 1, SHA: e.c1}, {Project: e.p, PipelineID: 2, SHA: e.c1}}
	var conflict *RefConflictError
	if err := e.svc.commitDeletes(ctx, repo, e.p, pins, token); !errors.As(err, &conflict) {
		t.Errorf("commitDeletes = %v, want the conflict of pipeline 1", err)
	}
	if sha, ok := e.refSHA(t, 2); !ok || sha != e.c1 {
		t.Errorf("pipeline 2's ref after the deleter gave it back: %q %v, want %s", sha, ok, e.c1)
	}
}
