package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// WorkerConfig configures the task workers and the sweep schedule. Zero
// values mean the defaults given per field.
type WorkerConfig struct {
	// Redis is shared with the rest of the process; the worker does not close
	// it. Its clock (TIME) numbers the sweep intervals of every replica.
	Redis redis.UniversalClient
	// Handlers does the work.
	Handlers *Handlers
	// Queue: empty means DefaultQueue.
	Queue string
	// Concurrency is the number of tasks run at once. Zero: 4.
	Concurrency int
	// GCInterval is how often the sweep runs, once per interval across every
	// replica sharing the Redis. Required.
	GCInterval time.Duration
	// MaintenanceInterval is how often the mirrors' housekeeping pass
	// runs, once per interval across every replica (and at most once per
	// mirror per interval, see mirrors.Housekeeping). Zero: never.
	MaintenanceInterval time.Duration
	// MaintenanceTimeout bounds one pass. Zero: housekeepingTimeout.
	MaintenanceTimeout time.Duration
	// PollInterval is asynq's TaskCheckInterval and DelayedTaskCheckInterval:
	// a deletion runs at most one bucket (expireBucket) plus this late. Zero: 1s.
	PollInterval time.Duration
	// ShutdownTimeout is how long Shutdown waits for running tasks. Zero: 30s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// QueueLogger takes asynq's own messages (its pollers' failures while
	// Redis is down, several a second); nil: Logger.
	QueueLogger *slog.Logger
	// Registerer receives the task metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Worker runs deletion tasks and sweeps, and schedules the periodic sweep.
type Worker struct {
	server       *asynq.Server
	client       *asynq.Client
	stopSchedule context.CancelFunc
	scheduleDone chan struct{}
}

// maxRetryDelay caps the backoff between retries of a failing task.
const maxRetryDelay = 5 * time.Minute

// retryDelay backs off exponentially from one second, with jitter so that
// replicas retrying the same kind of failure spread out.
func retryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	d := time.Second << min(n, 12)
	d = min(d, maxRetryDelay)
	return d/2 + rand.N(d/2+1)
}

// StartWorker starts processing tasks and scheduling the periodic sweep,
// the first one for the interval under way, so a restarted process catches
// up at once (unless another replica swept in this interval already).
func StartWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.GCInterval <= 0 {
		return nil, errors.New("starting worker: GC interval must be positive")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	concurrency := cfg.Concurrency
	if concurrency <= 0 {
		concurrency = 4
	}
	shutdown := cfg.ShutdownTimeout
	if shutdown <= 0 {
		shutdown = 30 * time.Second
	}
	queue := queueOrDefault(cfg.Queue)
	m := newTaskMetrics(cfg.Registerer)
	queueLogger := cfg.QueueLogger
	if queueLogger == nil {
		queueLogger = logger
	}

	server := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        poll,
		DelayedTaskCheckInterval: poll,
		RetryDelayFunc:           retryDelay,
		ShutdownTimeout:          shutdown,
		Logger:                   slogAdapter{queueLogger.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			retried, _ := asynq.GetRetryCount(ctx)
			maxRetry, _ := asynq.GetMaxRetry(ctx)
			m.failed(t.Type())
			logger.Warn("task failed", "type", t.Type(), "retry", retried, "max_retry", maxRetry, "err", err)
		}),
	})
	if err := server.Start(m.middleware(cfg.Handlers.Mux())); err != nil {
		return nil, fmt.Errorf("starting task server: %w", err)
	}

	client := asynq.NewClientFromRedisClient(cfg.Redis)
	ctx, stop := context.WithCancel(context.Background())
	w := &Worker{server: server, client: client, stopSchedule: stop, scheduleDone: make(chan struct{})}
	s, hk := periodicSchedules(cfg, client, queue, logger)
	go func() {
		defer close(w.scheduleDone)
		done := make(chan struct{})
		if hk != nil {
			go func() {
				defer close(done)
				hk.run(ctx)
			}()
		} else {
			close(done)
		}
		s.run(ctx)
		<-done
	}()
	return w, nil
}

// periodicSchedules are a worker's schedules of its periodic tasks: the
// sweep's, and the mirrors' housekeeping's when cfg has a maintenance
// interval (else nil).
func periodicSchedules(cfg WorkerConfig, client *asynq.Client, queue string, logger *slog.Logger) (sweep, housekeeping *sweepSchedule) {
	sweep = &sweepSchedule{redis: cfg.Redis, client: client, queue: queue, interval: cfg.GCInterval, logger: logger,
		what: "sweep", task: newSweepTask, id: sweepTaskID, timeout: max(cfg.GCInterval, sweepTimeout)}
	if cfg.MaintenanceInterval > 0 {
		timeout := cfg.MaintenanceTimeout
		if timeout <= 0 {
			timeout = housekeepingTimeout
		}
		housekeeping = &sweepSchedule{redis: cfg.Redis, client: client, queue: queue, interval: cfg.MaintenanceInterval,
			logger: logger, what: "mirror housekeeping", task: newHousekeepingTask, id: housekeepingTaskID, timeout: timeout}
	}
	return sweep, housekeeping
}

// sweepTimeout is the least time a sweep task is given: a sweep of a large
// repository outlasts a short interval (a test's, a benchmark's), and one cut
// short by its timeout starts over in the next interval.
const sweepTimeout = 10 * time.Minute

// housekeepingTimeout bounds one housekeeping pass over the mirrors when
// nothing else says: each mirror's git gc has its own bound within it.
const housekeepingTimeout = 2 * time.Hour

// sweepSchedule enqueues one periodic task (the sweep, the mirrors'
// housekeeping) per interval. The intervals are
// numbered on Redis's clock, the same for every replica, and the number is
// the sweep's TaskID, kept for an interval after the sweep ran: whichever
// replica comes first in an interval enqueues it, the others find it taken.
// (asynq's Unique would not do: its lock ends when the task ends, so
// replicas out of step each run one.)
type sweepSchedule struct {
	redis    redis.UniversalClient
	client   *asynq.Client
	queue    string
	interval time.Duration
	logger   *slog.Logger
	what     string
	task     func() *asynq.Task
	id       func(interval time.Duration, n int64) string
	timeout  time.Duration
}

func (s *sweepSchedule) run(ctx context.Context) {
	for {
		wait := s.interval
		now, err := s.redis.Time(ctx).Result()
		if err == nil {
			n := now.UnixMilli() / s.interval.Milliseconds()
			s.enqueue(ctx, n)
			wait = time.UnixMilli((n + 1) * s.interval.Milliseconds()).Sub(now)
		} else if ctx.Err() == nil {
			s.logger.Warn("could not read Redis's clock to schedule the "+s.what, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *sweepSchedule) enqueue(ctx context.Context, n int64) {
	_, err := s.client.EnqueueContext(ctx, s.task(),
		asynq.Queue(s.queue),
		asynq.TaskID(s.id(s.interval, n)),
		asynq.Retention(s.interval),
		asynq.Timeout(s.timeout),
		asynq.MaxRetry(3),
	)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && ctx.Err() == nil {
		// Not fatal: the next interval's sweep follows.
		s.logger.Warn("could not enqueue the periodic "+s.what, "err", err)
	}
}

// Shutdown stops scheduling, stops taking tasks and waits for the running
// ones to finish (up to the shutdown timeout; an unfinished task is
// re-delivered later, which its handler tolerates).
func (w *Worker) Shutdown() {
	w.stopSchedule()
	<-w.scheduleDone
	w.server.Shutdown()
	_ = w.client.Close()
}

// taskMetrics counts processed and failed tasks.
type taskMetrics struct {
	processed *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

func newTaskMetrics(reg prometheus.Registerer) *taskMetrics {
	m := &taskMetrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_tasks_processed_total", Help: "Background tasks run, by type and outcome.",
		}, []string{"type", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_task_failures_total", Help: "Background task runs that failed (retried unless permanent).",
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.processed, m.failures)
	}
	return m
}

func (m *taskMetrics) failed(taskType string) { m.failures.WithLabelValues(taskType).Inc() }

func (m *taskMetrics) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		m.processed.WithLabelValues(t.Type(), outcome).Inc()
		return err
	})
}

// slogAdapter lets asynq log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a slogAdapter) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a slogAdapter) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a slogAdapter) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// Fatal keeps asynq's meaning: the process cannot go on.
func (a slogAdapter) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...))
	os.Exit(1)
}
