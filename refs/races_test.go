package refs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// refFile is the loose ref file of a pipeline, to tell a ref left untouched
// from one deleted and made again.
func (e *env) refFile(t *testing.T, id PipelineID) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(filepath.Join(e.git.Dir, filepath.FromSlash(id.Ref().String())))
	if err != nil {
		t.Fatalf("ref file of %d: %v", id, err)
	}
	return fi
}

// expiredAndClaimed pins id, finishes it, lets its retention pass and claims
// it for deletion with token, as a deleter would: the start of every race
// with a deletion. It answers the claimed pin.
func (e *env) expiredAndClaimed(t *testing.T, id PipelineID, token string) Pin {
	t.Helper()
	e.pin(t, id, e.c1)
	if _, err := e.svc.Finish(t.Context(), e.p, id); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * testRetention)
	out, err := e.svc.Store.Claim(t.Context(), e.p, id, e.clock.Now(), testMaxAge, token, false)
	if err != nil || out.Status != statusClaimed {
		t.Fatalf("claim = %+v, %v", out, err)
	}
	return out.Pin
}

// A re-pin that calls a deletion off before the deleter reached git keeps
// its ref: the deleter, asking under the ref's lock, sees its claim gone and
// leaves the ref alone, rather than deleting it after the re-pin answered and
// putting it back later.
func TestRepinBeforeDeleteKeepsRefUntouched(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	claimed := e.expiredAndClaimed(t, 4, "deleter")
	repo, err := e.svc.Repos.Open(e.p)
	if err != nil {
		t.Fatal(err)
	}
	e.pin(t, 4, e.c1) // the retried job: answered now
	before := e.refFile(t, 4)
	deleted, declined, err := e.svc.deleteClaimed(ctx, repo, e.p, []Pin{claimed}, "deleter")
	if err != nil || deleted != 0 || len(declined) != 1 {
		t.Fatalf("deleteClaimed = %d, %v, %v; want nothing deleted, the pin declined", deleted, declined, err)
	}
	if after := e.refFile(t, 4); !os.SameFile(before, after) {
		t.Fatal("the ref was deleted and made again after the re-pin answered")
	}
	pin, err := e.svc.Get(ctx, e.p, 4)
	if err != nil || pin.State != StatePinned {
		t.Fatalf("pin = %+v, %v; want pinned", pin, err)
	}
}

// A DELETE of a ref without a record leaves a claimed deleted record first:
// a PUT whose git create came before the delete learns from it that it must
// create its ref again, and a sweep that listed the ref before does not
// adopt it.
func TestDeleteOfUnrecordedRefLeavesTombstone(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	listedAt := e.clock.Now()
	e.clock.Advance(time.Second)
	// What a first PUT's git step (or a hand) made: a ref without a record.
	e.git.Git(t, "update-ref", "refs/pipelines/8", string(e.c1))
	if err := e.svc.Delete(ctx, e.p, 8); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.refSHA(t, 8); ok {
		t.Fatal("ref still there")
	}
	pin, err := e.svc.Get(ctx, e.p, 8)
	if err != nil || pin.State != StateDeleted || pin.deletionClaimed {
		t.Fatalf("record after delete = %+v, %v; want deleted, claim released", pin, err)
	}
	// A sweep that listed refs before the delete.
	adopted, err := e.svc.Store.AdoptMany(ctx, e.p, map[PipelineID]ObjectID{8: e.c1}, e.clock.Now(), listedAt)
	if err != nil || adopted != 0 {
		t.Fatalf("adopted %d, %v; want the deleted ref left alone", adopted, err)
	}
	// The rest of the racing PUT: its record step tells it to create again.
	out, err := e.svc.Store.Pin(ctx, e.p, 8, e.c1, 0, e.clock.Now())
	if err != nil || out.Status != statusNew || !out.Recreate {
		t.Fatalf("pin record after the delete = %+v, %v; want new, create again", out, err)
	}
}

// Adopting a ref over a deleted record takes the pipeline out of its old
// merge request: closing that merge request must not expire the adopted pin.
func TestAdoptionLeavesOldMergeRequest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, _, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 3, SHA: e.c1, MergeRequestIID: 12}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, e.p, 3); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	e.git.Git(t, "update-ref", "refs/pipelines/3", string(e.c2)) // made again by hand
	res, err := e.svc.SweepAll(ctx)
	if err != nil || res.Adopted != 1 {
		t.Fatalf("sweep = %+v, %v; want 1 adopted", res, err)
	}
	min, max := mergeRequestRange(12)
	members, err := e.svc.Store.Client.ZRangeByLex(ctx, e.svc.Store.Keys.MergeRequests(e.p), &redis.ZRangeBy{Min: min, Max: max}).Result()
	member := slices.ContainsFunc(members, func(m string) bool { id, _ := memberID(m); return id == 3 })
	if err != nil || member {
		t.Fatalf("pipeline 3 still in merge request 12's set (%v, %v)", member, err)
	}
}

// A sweep restoring a vanished ref does not undo a deletion that began after
// it read the pin: it asks again under the ref's lock.
func TestRestoreDoesNotUndoDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.pin(t, 6, e.c1)
	e.clock.Advance(time.Second)
	listedAt := e.clock.Now()
	repo, err := e.svc.Repos.Open(e.p)
	if err != nil {
		t.Fatal(err)
	}
	e.git.Git(t, "update-ref", "-d", "refs/pipelines/6") // vanished
	pin, err := e.svc.Get(ctx, e.p, 6)                   // what the sweep read
	if err != nil {
		t.Fatal(err)
	}
	// A deleter claims the pin before the sweep writes the ref.
	if out, err := e.svc.Store.Claim(ctx, e.p, 6, e.clock.Now(), testMaxAge, "deleter", true); err != nil || out.Status != statusClaimed {
		t.Fatalf("claim = %+v, %v", out, err)
	}
	created, err := e.svc.restoreRef(ctx, repo, e.p, pin, listedAt)
	if err != nil || created {
		t.Fatalf("restoreRef = %v, %v; want refused", created, err)
	}
	if _, ok := e.refSHA(t, 6); ok {
		t.Fatal("the sweep re-created a ref being deleted")
	}
	// Unclaimed, the same restore goes ahead.
	e.pin(t, 6, e.c1) // clears the claim, and makes the ref
	e.git.Git(t, "update-ref", "-d", "refs/pipelines/6")
	created, err = e.svc.restoreRef(ctx, repo, e.p, pin, listedAt)
	if err != nil || !created {
		t.Fatalf("restoreRef of a live pin = %v, %v; want created", created, err)
	}
}

// Two re-pins during one deletion: each must learn that a delete may be in
// flight (and make sure of its ref), not only the first; the deleter sees
// its claim called off.
func TestEveryRepinSeesCalledOffDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.expiredAndClaimed(t, 4, "deleter")
	for _, who := range []string{"first", "second"} {
		out, err := e.svc.Store.Pin(ctx, e.p, 4, e.c1, 0, e.clock.Now())
		if err != nil || !out.Recreate {
			t.Fatalf("%s re-pin = %+v, %v; want told to make sure of its ref", who, out, err)
		}
	}
	held, err := e.svc.Store.ClaimsHeld(ctx, e.p, []PipelineID{4}, "deleter")
	if err != nil || held[0] {
		t.Fatalf("deleter's claim held = %v, %v; want called off", held, err)
	}
	outs, err := e.svc.Store.CommitDeletes(ctx, e.p, []PipelineID{4}, e.clock.Now(), "deleter")
	if err != nil || outs[0].Status != statusReclaimed || outs[0].Pin.State != StatePinned {
		t.Fatalf("deleter's commit = %+v, %v; want reclaimed, still pinned", outs, err)
	}
	// Settled: the next re-pin has nothing to fear.
	if out, err := e.svc.Store.Pin(ctx, e.p, 4, e.c1, 0, e.clock.Now()); err != nil || out.Recreate {
		t.Fatalf("re-pin after the commit = %+v, %v", out, err)
	}
}

// A sweep that lists refs while a DELETE of an unrecorded ref is under way
// does not adopt that ref: not while the tombstone's claim is fresh, and not
// after its commit, which stamps the deletion when it happened. A deleter
// that died leaves the ref adoptable once the claim is old.
func TestTombstoneKeepsSweepFromAdopting(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	start := e.clock.Now()
	if out, err := e.svc.Store.Tombstone(ctx, e.p, 8, e.c1, start, "deleter"); err != nil || out.Status != statusClaimed {
		t.Fatalf("tombstone = %+v, %v", out, err)
	}
	listed := start.Add(time.Second)
	ref := map[PipelineID]ObjectID{8: e.c1}
	if n, err := e.svc.Store.AdoptMany(ctx, e.p, ref, listed, listed); err != nil || n != 0 {
		t.Fatalf("adopted %d, %v during the delete; want 0", n, err)
	}
	if _, err := e.svc.Store.CommitDeletes(ctx, e.p, []PipelineID{8}, start.Add(2*time.Second), "deleter"); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.Store.AdoptMany(ctx, e.p, ref, start.Add(3*time.Second), listed); err != nil || n != 0 {
		t.Fatalf("adopted %d, %v from a listing made before the delete; want 0", n, err)
	}
	// Another tombstone whose deleter died.
	if _, err := e.svc.Store.Tombstone(ctx, e.p, 9, e.c1, start, "dead"); err != nil {
		t.Fatal(err)
	}
	later := start.Add(10 * time.Minute)
	if n, err := e.svc.Store.AdoptMany(ctx, e.p, map[PipelineID]ObjectID{9: e.c1}, later, later); err != nil || n != 1 {
		t.Fatalf("adopted %d, %v long after a dead deleter's claim; want 1", n, err)
	}
}

// A DELETE answers only once the ref is gone. When another deleter takes its
// claim over between the claim and git's lock (a sweep claiming the pin as
// due, or a second DELETE's tombstone), the DELETE's own delete declines, and
// the other deleter may not have deleted the ref yet: the DELETE is not done,
// and starting over it takes the claim back and deletes the ref itself. A
// re-pin that called the deletion off does settle it: the PUT came after.
func TestDeleteSupersededIsNotDone(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	repo, err := e.svc.Repos.Open(e.p)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(id PipelineID, token string) Pin {
		t.Helper()
		out, err := e.svc.Store.Claim(ctx, e.p, id, e.clock.Now(), testMaxAge, token, true)
		if err != nil || out.Status != statusClaimed {
			t.Fatalf("claim %d with %s = %+v, %v", id, token, out, err)
		}
		return out.Pin
	}

	t.Run("live pin claimed by a sweep", func(t *testing.T) {
		e.pin(t, 5, e.c1)
		mine := claim(5, "delete")
		claim(5, "sweep")
		settled, err := e.svc.deleteNow(ctx, repo, e.p, mine, "delete")
		if err != nil || settled {
			t.Fatalf("deleteNow = %v, %v; want not settled", settled, err)
		}
		if _, ok := e.refSHA(t, 5); !ok {
			t.Fatal("the superseded delete removed the ref; the sweep owns it")
		}
		if err := e.svc.Delete(ctx, e.p, 5); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.refSHA(t, 5); ok {
			t.Fatal("DELETE answered with the ref still there")
		}
	})

	t.Run("tombstone taken over by a second DELETE", func(t *testing.T) {
		e.git.Git(t, "update-ref", "refs/pipelines/9", string(e.c1))
		first, err := e.svc.Store.Tombstone(ctx, e.p, 9, e.c1, e.clock.Now(), "first")
		if err != nil || first.Status != statusClaimed {
			t.Fatalf("tombstone = %+v, %v", first, err)
		}
		if _, err := e.svc.Store.Tombstone(ctx, e.p, 9, e.c1, e.clock.Now(), "second"); err != nil {
			t.Fatal(err)
		}
		first.Pin.SHA = e.c1
		settled, err := e.svc.deleteNow(ctx, repo, e.p, first.Pin, "first")
		if err != nil || settled {
			t.Fatalf("deleteNow = %v, %v; want not settled", settled, err)
		}
		if err := e.svc.Delete(ctx, e.p, 9); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.refSHA(t, 9); ok {
			t.Fatal("DELETE answered with the ref still there")
		}
	})

	t.Run("re-pinned", func(t *testing.T) {
		e.pin(t, 6, e.c1)
		mine := claim(6, "delete")
		e.pin(t, 6, e.c1) // calls the deletion off
		settled, err := e.svc.deleteNow(ctx, repo, e.p, mine, "delete")
		if err != nil || !settled {
			t.Fatalf("deleteNow = %v, %v; want settled by the re-pin", settled, err)
		}
		if _, ok := e.refSHA(t, 6); !ok {
			t.Fatal("the re-pinned ref was deleted")
		}
	})
}
