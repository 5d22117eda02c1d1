package refs

import (
	"errors"
	"testing"
)

// TestLostRecordComesBackWithTheNextRequest: Redis loses every record
// (FLUSHALL, as a failover to a replica that lagged does for the pins it
// missed); each request that names a pin whose ref is still on disk brings
// its record back, adopted, and applies what it says.
func TestLostRecordComesBackWithTheNextRequest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for id := PipelineID(1); id <= 4; id++ {
		e.pin(t, id, e.merge)
	}
	e.redis.FlushAll(t)
	e.clock.Advance(1000)

	got, err := e.svc.Get(ctx, e.p, 1)
	if err != nil || got.State != StatePinned || got.SHA != e.merge || !got.Adopted {
		t.Fatalf("GET of a pin whose record was lost = %+v, %v", got, err)
	}

	// The merge ref moves; a pin by merge request alone means the pin the
	// pipeline has, and records the merge request.
	e.git.Commit(t, "main", map[string]string{"c.txt": "three\n"}, "third")
	e.git.SetMergeRequestRef(t, 12, "main", "feature")
	pin, created, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 2, MergeRequestIID: 12})
	if err != nil || created || pin.SHA != e.merge || pin.MergeRequestIID != 12 || pin.State != StatePinned {
		t.Fatalf("PUT by merge request of a pin whose record was lost = %+v, created %v, %v", pin, created, err)
	}
	pin, created, err = e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 3, SHA: e.merge, MergeRequestIID: 12})
	if err != nil || created || pin.MergeRequestIID != 12 {
		t.Fatalf("PUT by SHA of a pin whose record was lost = %+v, created %v, %v", pin, created, err)
	}

	fin, err := e.svc.Finish(ctx, e.p, 4)
	if err != nil || fin.State != StateFinished || fin.ExpiresAt.IsZero() {
		t.Fatalf("finish of a pin whose record was lost = %+v, %v", fin, err)
	}

	// The merge request's pins are its own again: closing it reaches them.
	closed, err := e.svc.CloseMergeRequest(ctx, e.p, 12)
	if err != nil || len(closed) != 2 {
		t.Fatalf("close after recovery = %v, %v", closed, err)
	}

	// Neither record nor ref: still no pin, and nothing recorded.
	var nf *PinNotFoundError
	if _, err := e.svc.Get(ctx, e.p, 9); !errors.As(err, &nf) {
		t.Fatalf("GET with neither record nor ref = %v", err)
	}
	if _, err := e.svc.Finish(ctx, e.p, 9); !errors.As(err, &nf) {
		t.Fatalf("finish with neither record nor ref = %v", err)
	}
	if n := e.redis.Client(t).Exists(ctx, e.svc.Store.Keys.Pin(e.p, 9)).Val(); n != 0 {
		t.Fatal("a pipeline with neither record nor ref got a record")
	}
}
