package refs

import (
	"testing"
	"time"
)

func TestDeliveries(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, ok, err := e.svc.RecallDelivery(ctx, "github", "d-1"); err != nil || ok {
		t.Fatalf("unseen delivery = %v, %v", ok, err)
	}
	if err := e.svc.RememberDelivery(ctx, "github", "d-1", []byte("first"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// The first answer stays the answer.
	if err := e.svc.RememberDelivery(ctx, "github", "d-1", []byte("second"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := e.svc.RecallDelivery(ctx, "github", "d-1"); err != nil || !ok || string(b) != "first" {
		t.Fatalf("recall = %q %v %v, want first", b, ok, err)
	}
	if _, ok, _ := e.svc.RecallDelivery(ctx, "gitea", "d-1"); ok {
		t.Fatal("another host's delivery of the same id was taken as seen")
	}
	c := e.redis.Client(t)
	keys, err := c.Keys(ctx, "refkeeper:delivery:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("delivery keys = %v, %v", keys, err)
	}
	if ttl := c.TTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("delivery TTL = %v, want up to 1h", ttl)
	}

	// Event times only move forward, and live as long as a pin may.
	t1 := time.Date(2016, 8, 12, 15, 26, 29, 0, time.UTC)
	if at, err := e.svc.EventTime(ctx, e.p, 31); err != nil || !at.IsZero() {
		t.Fatalf("no event time = %v, %v", at, err)
	}
	for _, at := range []time.Time{t1, t1.Add(-time.Minute)} {
		if err := e.svc.RecordEventTime(ctx, e.p, 31, at); err != nil {
			t.Fatal(err)
		}
	}
	if at, err := e.svc.EventTime(ctx, e.p, 31); err != nil || !at.Equal(t1) {
		t.Fatalf("event time = %v, %v; want %v (never lowered)", at, err, t1)
	}
	if ttl := c.TTL(ctx, e.svc.Store.eventTimeKey(e.p, 31)).Val(); ttl <= 0 || ttl > testMaxAge {
		t.Fatalf("event time TTL = %v, want up to max-age", ttl)
	}

	e.redis.Stop(t)
	if _, _, err := e.svc.RecallDelivery(ctx, "github", "d-1"); !IsUnavailable(err) {
		t.Fatalf("recall with Redis down = %v, want unavailable", err)
	}
	if err := e.svc.RecordEventTime(ctx, e.p, 31, t1); !IsUnavailable(err) {
		t.Fatalf("record with Redis down = %v, want unavailable", err)
	}
}
