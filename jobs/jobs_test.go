package jobs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// countingLifecycle records the calls the handlers make and fails the way it
// is told to.
type countingLifecycle struct {
	mu      sync.Mutex
	expired []refs.PipelineID
	sweeps  int
	err     error
}

func (c *countingLifecycle) ExpireDue(_ context.Context, _ refs.Project, id refs.PipelineID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expired = append(c.expired, id)
	return c.err
}

func (c *countingLifecycle) Sweep(context.Context) (refs.SweepResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeps++
	return refs.SweepResult{}, c.err
}

func (c *countingLifecycle) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.expired), c.sweeps
}

func TestScheduleExpiryIsDeduplicated(t *testing.T) {
	r := testdata.StartRedis(t)
	client := asynq.NewClientFromRedisClient(r.Client(t))
	s := &ExpiryScheduler{Client: client}
	at := time.Now().Add(time.Hour)
	for range 3 {
		if err := s.ScheduleExpiry(t.Context(), "group/app", 7, at); err != nil {
			t.Fatal(err)
		}
	}
	// A new due time (the pin was re-opened and finished again) is a new task.
	if err := s.ScheduleExpiry(t.Context(), "group/app", 7, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client(t))
	tasks, err := insp.ListScheduledTasks(DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%d scheduled tasks, want 2", len(tasks))
	}
}

func TestWorkerRunsDueDeletionsAndStartupSweep(t *testing.T) {
	r := testdata.StartRedis(t)
	life := &countingLifecycle{}
	w, err := StartWorker(WorkerConfig{
		Redis:        r.Client(t),
		NewRedis:     func() redis.UniversalClient { return r.Client(t) },
		Handlers:     &Handlers{Pins: life},
		GCInterval:   time.Hour,
		PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	s := &ExpiryScheduler{Client: asynq.NewClientFromRedisClient(r.Client(t))}
	if err := s.ScheduleExpiry(t.Context(), "group/app", 7, time.Now().Add(200*time.Millisecond)); err != nil {
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

// TestSchedulerFailureClosesItsConnection: a sweep scheduler that cannot be
// started leaves no Redis connection behind (asynq closes a scheduler's
// connection only on Shutdown, and only once it has started).
func TestSchedulerFailureClosesItsConnection(t *testing.T) {
	r := testdata.StartRedis(t)
	var conn *redis.Client
	newRedis := func() redis.UniversalClient {
		conn = r.Client(t)
		return conn
	}
	if _, err := startScheduler(newRedis, "@every never", nil, slog.Default()); err == nil {
		t.Fatal("a schedule that does not parse was accepted")
	}
	if err := conn.Ping(t.Context()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("ping on the failed scheduler's connection = %v, want %v", err, redis.ErrClosed)
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
	if err := h.expire(t.Context(), asynq.NewTask(TypeExpirePin, []byte(`{"project":"../x","pipeline_id":1}`))); !errors.Is(err, asynq.SkipRetry) {
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
