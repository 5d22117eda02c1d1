package jobs

import (
	"context"
	"testing"

	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/testdata"
)

// countingHousekeeper records the housekeeping passes it ran.
type countingHousekeeper struct {
	passes ranTasks
}

func (c *countingHousekeeper) RunAll(ctx context.Context) (mirrors.HousekeepingResult, error) {
	c.passes.record(ctx)
	return mirrors.HousekeepingResult{}, nil
}

// Three replicas with a maintenance interval, out of step, against one
// Redis: exactly one housekeeping pass per interval, not one per replica
// (see TestReplicasSweepOncePerInterval).
func TestReplicasHousekeepOncePerInterval(t *testing.T) {
	r := testdata.StartRedis(t)
	hk := &countingHousekeeper{passes: ranTasks{ran: make(chan string, 64)}}
	startRunner(t, WorkerConfig{Redis: r.Client(t), Handlers: &Handlers{Pins: &countingLifecycle{}, Mirrors: hk}})
	replicas := replicaSchedules(t, r, func(_, housekeeping *sweepSchedule) *sweepSchedule { return housekeeping })
	runOutOfStep(t, r, replicas, hk.passes.ran)
	checkOncePerInterval(t, "housekeeping passes", replicas[0], &hk.passes)
}
