package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/refkeeper/refkeeper/refs"
)

// Task type names, as stored in Redis.
const (
	TypeExpireDue = "refkeeper:project:expire-due"
	TypeSweep     = "refkeeper:gc:sweep"
	// TypeHousekeeping is one pass of git housekeeping over the mirrors.
	TypeHousekeeping = "refkeeper:mirrors:housekeeping"
)

// DefaultQueue is the asynq queue refkeeper's tasks go to, apart from any
// other asynq application sharing the Redis.
const DefaultQueue = "refkeeper"

// expireBucket is the time bucket of the due deletions of one project: every
// request for a time within one bucket is the same task, run at the
// bucket's end. A burst of expiries therefore makes one task per bucket it
// spans, whose one run deletes them all together, at most one bucket late.
const expireBucket = time.Second

// expirePayload names a project and the end of the bucket its task runs at.
type expirePayload struct {
	Project string `json:"project"`
	At      int64  `json:"at_ms"`
}

// bucketEnd is the end of the bucket that at falls in (at itself on a
// boundary).
func bucketEnd(at time.Time) time.Time {
	b := expireBucket.Milliseconds()
	ms := at.UnixMilli()
	return time.UnixMilli((ms + b - 1) / b * b).UTC()
}

func newExpireTask(p refs.Project, at time.Time) (*asynq.Task, error) {
	payload, err := json.Marshal(expirePayload{Project: string(p), At: at.UnixMilli()})
	if err != nil {
		return nil, fmt.Errorf("encoding expire task: %w", err)
	}
	return asynq.NewTask(TypeExpireDue, payload), nil
}

// expireTaskID makes the due deletions of one project in one bucket a single
// task: asking again is a no-op while it is queued.
func expireTaskID(p refs.Project, at time.Time) string {
	return "expire:" + string(p) + ":" + strconv.FormatInt(at.UnixMilli(), 10)
}

func parseExpirePayload(b []byte) (refs.Project, time.Time, error) {
	var pl expirePayload
	if err := json.Unmarshal(b, &pl); err != nil {
		return "", time.Time{}, fmt.Errorf("decoding expire task: %w", err)
	}
	p, err := refs.ParseProject(pl.Project)
	if err != nil {
		return "", time.Time{}, err
	}
	if pl.At < 1 {
		return "", time.Time{}, fmt.Errorf("expire task has time %d", pl.At)
	}
	return p, time.UnixMilli(pl.At).UTC(), nil
}

func newSweepTask() *asynq.Task { return asynq.NewTask(TypeSweep, nil) }

// sweepTaskID makes the periodic sweep of one interval, numbered from the
// Unix epoch on Redis's clock, a single task across every replica.
func sweepTaskID(interval time.Duration, n int64) string {
	return "sweep:" + strconv.FormatInt(interval.Milliseconds(), 10) + ":" + strconv.FormatInt(n, 10)
}

func newHousekeepingTask() *asynq.Task { return asynq.NewTask(TypeHousekeeping, nil) }

// housekeepingTaskID makes the housekeeping pass of one maintenance
// interval a single task across every replica, like sweepTaskID.
func housekeepingTaskID(interval time.Duration, n int64) string {
	return "housekeeping:" + strconv.FormatInt(interval.Milliseconds(), 10) + ":" + strconv.FormatInt(n, 10)
}
