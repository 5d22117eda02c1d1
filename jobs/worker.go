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
	// Redis is shared with the rest of the process; the worker does not close it.
	Redis redis.UniversalClient
	// NewRedis makes a connection the sweep scheduler owns (asynq closes a
	// scheduler's connection on shutdown, so it cannot be the shared one).
	// Required. It must build the client from options of its own: copying
	// the options of a client in use races with go-redis, which updates
	// them while connections are set up.
	NewRedis func() redis.UniversalClient
	// Handlers does the work.
	Handlers *Handlers
	// Queue: empty means DefaultQueue.
	Queue string
	// Concurrency is the number of tasks run at once. Zero: 4.
	Concurrency int
	// GCInterval is how often the sweep runs; it also bounds how long a
	// sweep task may take. Required.
	GCInterval time.Duration
	// PollInterval bounds how late a deletion at its due time can run
	// (asynq's TaskCheckInterval and DelayedTaskCheckInterval). Zero: 1s.
	PollInterval time.Duration
	// ShutdownTimeout is how long Shutdown waits for running tasks. Zero: 30s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Registerer receives the task metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Worker runs deletion tasks and sweeps, and schedules the periodic sweep.
type Worker struct {
	server    *asynq.Server
	scheduler *asynq.Scheduler
	client    *asynq.Client
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

// StartWorker starts processing tasks and registers the periodic sweep, and
// enqueues one sweep now, so a restarted process catches up at once.
func StartWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.GCInterval <= 0 {
		return nil, errors.New("starting worker: GC interval must be positive")
	}
	if cfg.NewRedis == nil {
		return nil, errors.New("starting worker: NewRedis is required")
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

	server := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        poll,
		DelayedTaskCheckInterval: poll,
		RetryDelayFunc:           retryDelay,
		ShutdownTimeout:          shutdown,
		Logger:                   slogAdapter{logger.With("component", "asynq")},
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

	sweepOpts := []asynq.Option{
		asynq.Queue(queue),
		// Every replica's scheduler enqueues the sweep; Unique keeps one.
		asynq.Unique(cfg.GCInterval),
		asynq.Timeout(cfg.GCInterval),
		asynq.MaxRetry(3),
	}
	scheduler, err := startScheduler(cfg.NewRedis, "@every "+cfg.GCInterval.String(), sweepOpts, logger)
	if err != nil {
		server.Shutdown()
		return nil, err
	}
	client := asynq.NewClientFromRedisClient(cfg.Redis)
	if _, err := client.Enqueue(newSweepTask(), sweepOpts...); err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
		// Not fatal: the periodic sweep follows within one interval.
		logger.Warn("could not enqueue start-up sweep", "err", err)
	}
	return &Worker{server: server, scheduler: scheduler, client: client}, nil
}

// startScheduler starts a scheduler that enqueues the sweep on spec, over a
// Redis connection of its own. The scheduler closes that connection on
// Shutdown, but only once it has started: on every failure before, it is
// closed here.
func startScheduler(newRedis func() redis.UniversalClient, spec string, opts []asynq.Option, logger *slog.Logger) (*asynq.Scheduler, error) {
	conn := newRedis()
	scheduler := asynq.NewScheduler(ownedConn{conn}, &asynq.SchedulerOpts{
		Logger:   slogAdapter{logger.With("component", "asynq-scheduler")},
		LogLevel: asynq.WarnLevel,
		EnqueueErrorHandler: func(t *asynq.Task, _ []asynq.Option, err error) {
			if !errors.Is(err, asynq.ErrDuplicateTask) {
				logger.Warn("could not enqueue periodic task", "type", t.Type(), "err", err)
			}
		},
	})
	if _, err := scheduler.Register(spec, newSweepTask(), opts...); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("scheduling sweeps: %w", err)
	}
	if err := scheduler.Start(); err != nil {
		// Start fails only for a scheduler already running or stopped;
		// Shutdown stops it if it runs, and does nothing otherwise.
		scheduler.Shutdown()
		_ = conn.Close()
		return nil, fmt.Errorf("starting sweep scheduler: %w", err)
	}
	return scheduler, nil
}

// Shutdown stops scheduling, stops taking tasks and waits for the running
// ones to finish (up to the shutdown timeout; an unfinished task is
// re-delivered later, which its handler tolerates).
func (w *Worker) Shutdown() {
	w.scheduler.Shutdown()
	w.server.Shutdown()
	_ = w.client.Close()
}

// ownedConn hands asynq a connection it may close.
type ownedConn struct{ conn redis.UniversalClient }

func (o ownedConn) MakeRedisClient() any { return o.conn }

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
