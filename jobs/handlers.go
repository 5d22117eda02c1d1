package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
)

// Lifecycle is what the handlers need from the domain; *refs.Service has it.
type Lifecycle interface {
	ExpireDue(ctx context.Context, p refs.Project) (refs.ExpireResult, error)
	Sweep(ctx context.Context) (refs.SweepResult, error)
}

// Housekeeper is what the housekeeping task needs; *mirrors.Housekeeping has it.
type Housekeeper interface {
	RunAll(ctx context.Context) (mirrors.HousekeepingResult, error)
}

// Handlers turns tasks into domain calls.
type Handlers struct {
	Pins Lifecycle
	// Scheduler schedules a project's next due deletions after a run; nil:
	// only the requests of the domain and the sweeps do.
	Scheduler *ExpiryScheduler
	// Mirrors runs the mirrors' housekeeping; nil: the task does nothing.
	Mirrors Housekeeper
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

func (h *Handlers) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Mux routes each task type to its handler.
func (h *Handlers) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeExpireDue, h.expire)
	mux.HandleFunc(TypeSweep, h.sweep)
	mux.HandleFunc(TypeHousekeeping, h.housekeep)
	return mux
}

func (h *Handlers) expire(ctx context.Context, t *asynq.Task) error {
	p, at, err := parseExpirePayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	res, err := h.Pins.ExpireDue(ctx, p)
	if err != nil {
		return retryIfTransient(err)
	}
	if res.NextDue.IsZero() || h.Scheduler == nil {
		return nil
	}
	// The next run, never in this task's own bucket: one that came early
	// (this machine's clock ahead of Redis's) would otherwise find its
	// follow-up taken by itself.
	next := res.NextDue
	if !next.After(at) {
		next = at.Add(time.Millisecond)
	}
	if err := h.Scheduler.ScheduleExpiry(ctx, p, next); err != nil {
		h.logger().Warn("could not schedule the next deletions; the GC sweep will do them", "project", p, "err", err)
	}
	return nil
}

func (h *Handlers) sweep(ctx context.Context, _ *asynq.Task) error {
	res, err := h.Pins.Sweep(ctx)
	if err != nil {
		return retryIfTransient(err)
	}
	h.logger().Info("gc sweep done", "deleted", res.Deleted, "adopted", res.Adopted, "kept", res.Kept,
		"restored", res.Restored, "purged", res.Purged, "failed_projects", res.FailedProjects,
		"duration_ms", res.Duration.Milliseconds())
	return nil
}

func (h *Handlers) housekeep(ctx context.Context, _ *asynq.Task) error {
	if h.Mirrors == nil {
		return nil
	}
	res, err := h.Mirrors.RunAll(ctx)
	if err != nil {
		return retryIfTransient(err)
	}
	h.logger().Info("mirror housekeeping done", "ran", res.Ran, "skipped", res.Skipped, "failed", res.Failed)
	return nil
}

// retryIfTransient lets asynq retry what may pass by itself and stops it from
// retrying what cannot.
func retryIfTransient(err error) error {
	if err == nil || refs.IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}
