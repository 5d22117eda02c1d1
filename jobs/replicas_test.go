package jobs

import (
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refkeeper/refkeeper/testdata"
)

// replicaIntervals is how many intervals the replicas of the tests below
// live through.
const replicaIntervals = 10

// replicaInterval is the replicas' interval. The test numbers the intervals
// itself (1 to replicaIntervals, far from the interval under way), so its
// length only sets how long a task that ran keeps its ID: far longer than
// the test.
const replicaInterval = time.Hour

// Three replicas, each with its own sweep schedule, against one Redis and a
// worker that runs what they enqueue: every interval's sweep runs exactly
// once, whether a replica enqueues it first, while it waits or runs, or
// after it ran. The intervals are numbered by the test, as each schedule
// numbers them from Redis's clock, so the count is exact on a loaded
// machine: the test waits for events (a sweep ran, the queue is empty),
// never for time.
func TestReplicasSweepOncePerInterval(t *testing.T) {
	r := testdata.StartRedis(t)
	life := &countingLifecycle{sweeps: ranTasks{ran: make(chan string, 64)}}
	startRunner(t, WorkerConfig{Redis: r.Client(t), Handlers: &Handlers{Pins: life}})
	replicas := replicaSchedules(t, r, func(sweep, _ *sweepSchedule) *sweepSchedule { return sweep })
	runOutOfStep(t, r, replicas, life.sweeps.ran)
	checkOncePerInterval(t, "sweeps", replicas[0], &life.sweeps)
}

// startRunner starts the worker that runs the replicas' tasks; its own
// schedules use replicaInterval, so the one sweep it enqueues itself is of
// the interval under way, which the test's numbers never reach.
func startRunner(t *testing.T, cfg WorkerConfig) {
	t.Helper()
	cfg.GCInterval = replicaInterval
	cfg.PollInterval = 50 * time.Millisecond
	w, err := StartWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
}

// replicaSchedules builds three replicas' schedules as StartWorker builds
// them (periodicSchedules), each with a Redis client of its own, and
// answers the one pick chooses of each.
func replicaSchedules(t *testing.T, r *testdata.Redis, pick func(sweep, housekeeping *sweepSchedule) *sweepSchedule) [3]*sweepSchedule {
	t.Helper()
	cfg := WorkerConfig{GCInterval: replicaInterval, MaintenanceInterval: replicaInterval}
	var replicas [3]*sweepSchedule
	for i := range replicas {
		cfg.Redis = r.Client(t)
		client := asynq.NewClientFromRedisClient(cfg.Redis)
		replicas[i] = pick(periodicSchedules(cfg, client, DefaultQueue, slog.Default()))
	}
	return replicas
}

// runOutOfStep lets the replicas enqueue the task of every interval out of
// step, as real replicas whose timers fire apart do: in each interval
// another replica comes first, a second one comes while the task is queued
// or running, and the third only after it ran (ran tells). At the end a
// restarted replica enqueues the interval under way again. Then it waits
// until the queue has nothing left to run.
func runOutOfStep(t *testing.T, r *testdata.Redis, replicas [3]*sweepSchedule, ran <-chan string) {
	t.Helper()
	ctx := t.Context()
	for n := int64(1); n <= replicaIntervals; n++ {
		first, second, late := replicas[n%3], replicas[(n+1)%3], replicas[(n+2)%3]
		first.enqueue(ctx, n)
		second.enqueue(ctx, n)
		waitRan(t, ran, first.id(first.interval, n))
		late.enqueue(ctx, n)
	}
	replicas[0].enqueue(ctx, replicaIntervals)

	inspector := asynq.NewInspectorFromRedisClient(r.Client(t))
	testdata.WaitFor(t, "the queue to run everything", 30*time.Second, func() bool {
		q, err := inspector.GetQueueInfo(DefaultQueue)
		return err == nil && q.Pending+q.Active+q.Scheduled+q.Retry+q.Aggregating == 0
	})
}

// waitRan waits until the task id has run.
func waitRan(t *testing.T, ran <-chan string, id string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-ran:
			if got == id {
				return
			}
		case <-timeout:
			t.Fatalf("task %s did not run within 30 s", id)
		}
	}
}

// checkOncePerInterval: the task of each of the replicas' intervals ran
// exactly once.
func checkOncePerInterval(t *testing.T, what string, s *sweepSchedule, runs *ranTasks) {
	t.Helper()
	for n := int64(1); n <= replicaIntervals; n++ {
		if got := runs.runs(s.id(s.interval, n)); got != 1 {
			t.Errorf("interval %d: %d %s from 3 replicas, want exactly 1", n, got, what)
		}
	}
}
