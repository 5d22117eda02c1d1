package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/testdata"
)

// countingHousekeeper records when the housekeeping passes began.
type countingHousekeeper struct {
	mu     sync.Mutex
	passes []time.Time
}

func (c *countingHousekeeper) RunAll(context.Context) (mirrors.HousekeepingResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.passes = append(c.passes, time.Now())
	return mirrors.HousekeepingResult{}, nil
}

func (c *countingHousekeeper) until(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.passes {
		if at.Before(t) {
			n++
		}
	}
	return n
}

// Three replicas with a maintenance interval, out of step, against one
// Redis: one housekeeping pass per interval the window touches, not one per
// replica.
func TestReplicasHousekeepOncePerInterval(t *testing.T) {
	r := testdata.StartRedis(t)
	hk := &countingHousekeeper{}
	const interval = time.Second
	end := runReplicas(t, interval, 6, func() WorkerConfig {
		return WorkerConfig{
			Redis:               r.Client(t),
			Handlers:            &Handlers{Pins: &countingLifecycle{}, Mirrors: hk},
			GCInterval:          time.Hour,
			MaintenanceInterval: interval,
			PollInterval:        100 * time.Millisecond,
		}
	})
	passes := hk.until(end)
	t.Logf("%d housekeeping passes in 6 intervals with 3 replicas", passes)
	if passes < 1 || passes > 7 {
		t.Fatalf("%d housekeeping passes in 6 intervals with 3 replicas; want 1 to 7", passes)
	}
}
