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
	var workers []*Worker
	start := time.Now()
	for i := range 3 {
		if i > 0 {
			// Replicas start at different moments, so their schedules are
			// out of step, as in a real deployment.
			<-time.After(interval / 3)
		}
		w, err := StartWorker(WorkerConfig{
			Redis:        r.Client(t),
			Handlers:     &Handlers{Pins: life},
			GCInterval:   interval,
			PollInterval: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	end := start.Add(10 * interval)
	<-time.After(time.Until(end)) // the length of the experiment, not a wait for something
	for _, w := range workers {
		w.Shutdown()
	}
	sweeps := life.sweepsUntil(end)
	t.Logf("%d sweeps in 10 intervals with 3 replicas", sweeps)
	if sweeps < 1 || sweeps > 11 {
		t.Fatalf("%d sweeps in 10 intervals with 3 replicas; want 1 to 11", sweeps)
	}
}
