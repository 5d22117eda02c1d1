package jobs

import (
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// Three replicas, each with its own sweep schedule, against one Redis: over
// ten intervals at most eleven sweeps run (one per interval the window
// touches), not one per replica and interval. The replicas start a third of
// an interval apart, as real ones are out of step.
func TestReplicasSweepOncePerInterval(t *testing.T) {
	r := testdata.StartRedis(t)
	life := &countingLifecycle{}
	const interval = time.Second
	end := runReplicas(t, interval, 10, func() WorkerConfig {
		return WorkerConfig{
			Redis:        r.Client(t),
			Handlers:     &Handlers{Pins: life},
			GCInterval:   interval,
			PollInterval: 100 * time.Millisecond,
		}
	})
	sweeps := life.sweepsUntil(end)
	t.Logf("%d sweeps in 10 intervals with 3 replicas", sweeps)
	if sweeps < 1 || sweeps > 11 {
		t.Fatalf("%d sweeps in 10 intervals with 3 replicas; want 1 to 11", sweeps)
	}
}

// runReplicas runs three workers made by config, started a third of an
// interval apart (real replicas are out of step), for the given number of
// intervals from the first start, then shuts them down and answers when the
// window ended.
func runReplicas(t *testing.T, interval time.Duration, intervals int, config func() WorkerConfig) time.Time {
	t.Helper()
	var workers []*Worker
	start := time.Now()
	for i := range 3 {
		if i > 0 {
			<-time.After(interval / 3)
		}
		w, err := StartWorker(config())
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	end := start.Add(time.Duration(intervals) * interval)
	<-time.After(time.Until(end)) // the length of the experiment, not a wait for something
	for _, w := range workers {
		w.Shutdown()
	}
	return end
}
