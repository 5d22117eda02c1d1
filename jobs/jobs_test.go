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
	sweeps  ranTasks
	nextDue time.Time // what ExpireDue answers
	err     error
}

func (c *countingLifecycle) ExpireDue(_ context.Context, p refs.Project) (refs.ExpireResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expired = append(c.expired, p)
	return refs.ExpireResult{NextDue: c.nextDue}, c.err
}

func (c *countingLifecycle) Sweep(ctx context.Context) (refs.SweepResult, error) {
	c.sweeps.record(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	return refs.SweepResult{}, c.err
}

func (c *countingLifecycle) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.expired), c.sweeps.total()
}

// ranTasks records which tasks a handler ran, by task ID, and tells of each
// run on ran when that is set.
type ranTasks struct {
	mu  sync.Mutex
	ids map[string]int
	ran chan string // buffered; a run it has no room for is not told
}

func (r *ranTasks) record(ctx context.Context) {
	id, _ := asynq.GetTaskID(ctx)
	r.mu.Lock()
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	r.ids[id]++
	r.mu.Unlock()
	if r.ran != nil {
		select {
		case r.ran <- id:
		default:
		}
	}
}

// runs answers how often the task id ran.
func (r *ranTasks) runs(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

func (r *ranTasks) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.ids {
		n += c
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

// The n-th retry of a failing task waits between half and all of
// 1 s << n, capped at maxRetryDelay (5 min): the bounds below are written
// out, not computed the way retryDelay computes them. Each retry is drawn
// often enough that the jitter must reach both ends of its range.
func TestRetryDelayBacksOff(t *testing.T) {
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, time.Second, 2 * time.Second},
		{2, 2 * time.Second, 4 * time.Second},
		{3, 4 * time.Second, 8 * time.Second},
		{5, 16 * time.Second, 32 * time.Second},
		{8, 128 * time.Second, 256 * time.Second},
		{9, 150 * time.Second, 5 * time.Minute}, // 512 s capped
		{12, 150 * time.Second, 5 * time.Minute},
		{expireRetries, 150 * time.Second, 5 * time.Minute},
		{63, 150 * time.Second, 5 * time.Minute}, // no overflow of the shift
	} {
		const draws = 2000
		quarter := (tt.hi - tt.lo) / 4
		low, high := false, false
		for range draws {
			d := retryDelay(tt.n, nil, nil)
			if d < tt.lo || d > tt.hi {
				t.Fatalf("retry %d: delay %v out of [%v, %v]", tt.n, d, tt.lo, tt.hi)
			}
			low = low || d < tt.lo+quarter
			high = high || d > tt.hi-quarter
		}
		// A quarter of the range missed in 2000 uniform draws: (3/4)^2000.
		if !low || !high {
			t.Errorf("retry %d: %d delays never reached the lower (%v) or the upper (%v) quarter of [%v, %v]: no jitter",
				tt.n, draws, low, high, tt.lo, tt.hi)
		}
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
