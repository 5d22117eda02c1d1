package hooks

import (
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// The delivery store runs on a real three-master Redis Cluster: delivery
// keys carry no project and land on any master, event times share their
// project's slot, and the event time script is handed its key.
func TestDeliveriesOnRedisCluster(t *testing.T) {
	d := &RedisDeliveries{Client: testdata.StartCluster(t).Client(t), EventTTL: time.Hour}
	ctx := t.Context()
	for _, id := range []string{"d-1", "d-2", "d-3", "d-4"} {
		if err := d.RememberDelivery(ctx, "github", id, []byte("answer "+id), time.Hour); err != nil {
			t.Fatalf("RememberDelivery(%s): %v", id, err)
		}
	}
	for _, id := range []string{"d-1", "d-2", "d-3", "d-4"} {
		if b, ok, err := d.RecallDelivery(ctx, "github", id); err != nil || !ok || string(b) != "answer "+id {
			t.Fatalf("RecallDelivery(%s) = %q %v %v", id, b, ok, err)
		}
	}
	t1 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, p := range []refs.Project{"group/app", "other/app"} {
		for _, at := range []time.Time{t1, t1.Add(-time.Minute)} {
			if err := d.RecordEventTime(ctx, p, 7, at); err != nil {
				t.Fatalf("RecordEventTime(%s): %v", p, err)
			}
		}
		if at, err := d.EventTime(ctx, p, 7); err != nil || !at.Equal(t1) {
			t.Fatalf("EventTime(%s) = %v, %v; want %v", p, at, err, t1)
		}
	}
}
