package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/refkeeper/refkeeper/refs"
)

// ExpiryScheduler enqueues the due deletions of projects; it implements
// refs.ExpiryScheduler.
type ExpiryScheduler struct {
	Client *asynq.Client
	// Queue: empty means DefaultQueue.
	Queue string
}

var _ refs.ExpiryScheduler = (*ExpiryScheduler)(nil)

// expireTimeout bounds one run of a project's due deletions: batches of
// 10,000 refs take seconds each, so this only catches a hung git.
const expireTimeout = 5 * time.Minute

// expireRetries is how often a failing run is retried with backoff before
// asynq keeps it as archived; the GC sweep deletes the refs anyway.
const expireRetries = 10

// ScheduleExpiry enqueues a run of the project's due deletions at the end
// of at's bucket (at once if that is past). Every request within one bucket
// is the same task.
func (s *ExpiryScheduler) ScheduleExpiry(ctx context.Context, p refs.Project, at time.Time) error {
	end := bucketEnd(at)
	task, err := newExpireTask(p, end)
	if err != nil {
		return err
	}
	_, err = s.Client.EnqueueContext(ctx, task,
		asynq.Queue(queueOrDefault(s.Queue)),
		asynq.TaskID(expireTaskID(p, end)),
		asynq.ProcessAt(end),
		asynq.MaxRetry(expireRetries),
		asynq.Timeout(expireTimeout),
		// No retention: a completed task leaves nothing in Redis. A request
		// for its bucket after it ran runs again, which ExpireDue tolerates.
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
