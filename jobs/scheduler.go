package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/refkeeper/refkeeper/refs"
)

// ExpiryScheduler enqueues deletion tasks; it implements
// refs.ExpiryScheduler.
type ExpiryScheduler struct {
	Client *asynq.Client
	// Queue: empty means DefaultQueue.
	Queue string
}

var _ refs.ExpiryScheduler = (*ExpiryScheduler)(nil)

// expireTimeout bounds one deletion task; a batch of one ref takes
// milliseconds, so this only catches a hung git.
const expireTimeout = 2 * time.Minute

// expireRetries is how often a failing deletion is retried with backoff
// before asynq keeps it as archived; the GC sweep deletes the ref anyway.
const expireRetries = 10

// ScheduleExpiry enqueues the deletion of a pin's ref at `at` (at once if at
// is past). The same pin and time enqueued twice is one task.
func (s *ExpiryScheduler) ScheduleExpiry(ctx context.Context, p refs.Project, id refs.PipelineID, at time.Time) error {
	task, err := newExpireTask(p, id)
	if err != nil {
		return err
	}
	_, err = s.Client.EnqueueContext(ctx, task,
		asynq.Queue(queueOrDefault(s.Queue)),
		asynq.TaskID(expireTaskID(p, id, at)),
		asynq.ProcessAt(at),
		asynq.MaxRetry(expireRetries),
		asynq.Timeout(expireTimeout),
		// No retention: a completed task leaves nothing in Redis. A duplicate
		// enqueued after it ran just runs again, which ExpireDue tolerates.
	)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}

func queueOrDefault(q string) string {
	if q == "" {
		return DefaultQueue
	}
	return q
}
