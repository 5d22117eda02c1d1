package hooks

import (
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

func TestDeliveries(t *testing.T) {
	const maxAge = 24 * time.Hour
	r := testdata.StartRedis(t)
	d := &RedisDeliveries{Client: r.Client(t), EventTTL: maxAge}
	p := refs.Project("group/app")
	ctx := t.Context()
	if _, ok, err := d.RecallDelivery(ctx, "github", "d-1"); err != nil || ok {
		t.Fatalf("unseen delivery = %v, %v", ok, err)
	}
	if err := d.RememberDelivery(ctx, "github", "d-1", []byte("first"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// The first answer stays the answer.
	if err := d.RememberDelivery(ctx, "github", "d-1", []byte("second"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := d.RecallDelivery(ctx, "github", "d-1"); err != nil || !ok || string(b) != "first" {
		t.Fatalf("recall = %q %v %v, want first", b, ok, err)
	}
	if _, ok, _ := d.RecallDelivery(ctx, "gitea", "d-1"); ok {
		t.Fatal("another host's delivery of the same id was taken as seen")
	}
	c := r.Client(t)
	keys, err := c.Keys(ctx, "refkeeper:delivery:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("delivery keys = %v, %v", keys, err)
	}
	if ttl := c.TTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("delivery TTL = %v, want up to 1h", ttl)
	}

	// Event times only move forward, and live as long as a pin may.
	t1 := time.Date(2016, 8, 12, 15, 26, 29, 0, time.UTC)
	if at, err := d.EventTime(ctx, p, 31); err != nil || !at.IsZero() {
		t.Fatalf("no event time = %v, %v", at, err)
	}
	for _, at := range []time.Time{t1, t1.Add(-time.Minute)} {
		if err := d.RecordEventTime(ctx, p, 31, at); err != nil {
			t.Fatal(err)
		}
	}
	if at, err := d.EventTime(ctx, p, 31); err != nil || !at.Equal(t1) {
		t.Fatalf("event time = %v, %v; want %v (never lowered)", at, err, t1)
	}
	if ttl := c.TTL(ctx, d.Keys.EventTime(p, 31)).Val(); ttl <= 0 || ttl > maxAge {
		t.Fatalf("event time TTL = %v, want up to max-age", ttl)
	}

	r.Stop(t)
	if _, _, err := d.RecallDelivery(ctx, "github", "d-1"); !refs.IsUnavailable(err) {
		t.Fatalf("recall with Redis down = %v, want unavailable", err)
	}
	if err := d.RecordEventTime(ctx, p, 31, t1); !refs.IsUnavailable(err) {
		t.Fatalf("record with Redis down = %v, want unavailable", err)
	}
}
