package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// countingLifecycle records the calls the handlers make and fails the way it
// is told to.
type countingLifecycle struct {
	mu      sync.Mutex
	expired []refs.Project
	sweeps  []time.Time
	nextDue time.Time // what ExpireDue answers
	err     error
}

func (c *countingLifecycle) ExpireDue(_ context.Context, p refs.Project) (refs.ExpireResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expired = append(c.expired, p)
	return refs.ExpireResult{NextDue: c.nextDue}, c.err
}

func (c *countingLifecycle) Sweep(context.Context) (refs.SweepResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeps = append(c.sweeps, time.Now())
	return refs.SweepResult{}, c.err
}

func (c *countingLifecycle) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.expired), len(c.sweeps)
}

// sweepsUntil counts the sweeps that began before t.
func (c *countingLifecycle) sweepsUntil(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.sweeps {
		if at.Before(t) {
			n++
		}
	}
	return n
}

func TestScheduleExpiryIsDeduplicated(t *testing.T) {
	r := testdata.StartRedis(t)
	client := asynq.NewClientFromRedisClient(r.Client(t))
	s := &ExpiryScheduler{Client: client}
	start := bucketEnd(time.Now().Add(time.Hour))
	// Many pins of one project due within one bucket: one task.
	for i := range 50 {
		at := start.Add(time.Duration(i+1) * expireBucket / 51)
		if err := s.ScheduleExpiry(t.Context(), "group/app", at); err != nil {
			t.Fatal(err)
		}
	}
	// The next bucket, and another project: a task each.
	if err := s.ScheduleExpiry(t.Context(), "group/app", start.Add(expireBucket+time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.ScheduleExpiry(t.Context(), "group/other", start.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client(t))
	tasks, err := insp.ListScheduledTasks(DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 3 {
		t.Fatalf("%d scheduled tasks, want 3", len(tasks))
	}
	for _, task := range tasks {
		p, at, err := parseExpirePayload(task.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if !at.Equal(task.NextProcessAt.UTC()) || !bucketEnd(at).Equal(at) {
			t.Fatalf("task of %s for %v runs at %v; want at the end of its bucket", p, at, task.NextProcessAt)
		}
	}
}

func TestWorkerRunsDueDeletionsAndStartupSweep(t *testing.T) {
	r := testdata.StartRedis(t)
	life := &countingLifecycle{}
	w, err := StartWorker(WorkerConfig{
		Redis:        r.Client(t),
		Handlers:     &Handlers{Pins: life},
		GCInterval:   time.Hour,
		PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	s := &ExpiryScheduler{Client: asynq.NewClientFromRedisClient(r.Client(t))}
	if err := s.ScheduleExpiry(t.Context(), "group/app", time.Now().Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		expired, sweeps := life.counts()
		if expired == 1 && sweeps >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: %d deletions, %d sweeps; want 1 and at least 1", expired, sweeps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRetryOnlyTransientFailures(t *testing.T) {
	transient := &refs.UnavailableError{Op: "test", Cause: errors.New("redis down")}
	if err := retryIfTransient(transient); errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("transient error marked SkipRetry: %v", err)
	}
	permanent := errors.New("bad payload")
	if err := retryIfTransient(permanent); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("permanent error retried: %v", err)
	}
	h := &Handlers{Pins: &countingLifecycle{}}
	if err := h.expire(t.Context(), asynq.NewTask(TypeExpireDue, []byte(`{"project":"../x","at_ms":1}`))); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("bad payload = %v, want SkipRetry", err)
	}
}

func TestRetryDelayBacksOff(t *testing.T) {
	prev := time.Duration(0)
	for n := 0; n < 20; n++ {
		d := retryDelay(n, nil, nil)
		if d <= 0 || d > maxRetryDelay {
			t.Fatalf("retry %d: delay %v out of (0, %v]", n, d, maxRetryDelay)
		}
		if n > 0 && n < 8 && d < prev/4 {
			t.Fatalf("retry %d: delay %v shrank from %v", n, d, prev)
		}
		prev = d
	}
}

// After a run the handler asks for the project's next one at its next due
// time, and never in the run's own bucket (a run that came early, by this
// machine's clock, would find its follow-up taken by itself).
func TestExpireSchedulesTheNextRun(t *testing.T) {
	at := bucketEnd(time.Now().Add(time.Hour))
	for _, tt := range []struct {
		name    string
		nextDue time.Time
		want    time.Time
	}{
		{"later", at.Add(90 * time.Minute), bucketEnd(at.Add(90 * time.Minute))},
		{"within its own bucket", at.Add(-time.Millisecond), at.Add(expireBucket)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := testdata.StartRedis(t)
			client := asynq.NewClientFromRedisClient(r.Client(t))
			h := &Handlers{Pins: &countingLifecycle{nextDue: tt.nextDue}, Scheduler: &ExpiryScheduler{Client: client}}
			task, err := newExpireTask("group/app", at)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.expire(t.Context(), task); err != nil {
				t.Fatal(err)
			}
			tasks, err := asynq.NewInspectorFromRedisClient(r.Client(t)).ListScheduledTasks(DefaultQueue)
			if err != nil || len(tasks) != 1 {
				t.Fatalf("scheduled tasks = %v, %v; want 1", tasks, err)
			}
			if _, next, _ := parseExpirePayload(tasks[0].Payload); !next.Equal(tt.want) {
				t.Fatalf("next run at %v, want %v", next, tt.want)
			}
		})
	}
}
