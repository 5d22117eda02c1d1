package jobs

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/refkeeper/refkeeper/refs"
)

// Lifecycle is what the handlers need from the domain; *refs.Service has it.
type Lifecycle interface {
	ExpireDue(ctx context.Context, p refs.Project, id refs.PipelineID) error
	Sweep(ctx context.Context) (refs.SweepResult, error)
}

// Handlers turns tasks into domain calls.
type Handlers struct {
	Pins Lifecycle
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
	mux.HandleFunc(TypeExpirePin, h.expire)
	mux.HandleFunc(TypeSweep, h.sweep)
	return mux
}

func (h *Handlers) expire(ctx context.Context, t *asynq.Task) error {
	p, id, err := parseExpirePayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return retryIfTransient(h.Pins.ExpireDue(ctx, p, id))
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

// retryIfTransient lets asynq retry what may pass by itself and stops it from
// retrying what cannot.
func retryIfTransient(err error) error {
	if err == nil || refs.IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}
