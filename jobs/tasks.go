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
	TypeExpirePin = "refkeeper:pin:expire"
	TypeSweep     = "refkeeper:gc:sweep"
)

// DefaultQueue is the asynq queue refkeeper's tasks go to, apart from any
// other asynq application sharing the Redis.
const DefaultQueue = "refkeeper"

// expirePayload names one pin.
type expirePayload struct {
	Project    string `json:"project"`
	PipelineID int64  `json:"pipeline_id"`
}

func newExpireTask(p refs.Project, id refs.PipelineID) (*asynq.Task, error) {
	payload, err := json.Marshal(expirePayload{Project: string(p), PipelineID: int64(id)})
	if err != nil {
		return nil, fmt.Errorf("encoding expire task: %w", err)
	}
	return asynq.NewTask(TypeExpirePin, payload), nil
}

// expireTaskID makes the deletion of one pin at one due time a single task:
// scheduling it again is a no-op, while a pin that is re-opened and finished
// again gets a new due time and so a new task.
func expireTaskID(p refs.Project, id refs.PipelineID, at time.Time) string {
	return "expire:" + string(p) + ":" + id.String() + ":" + strconv.FormatInt(at.UnixMilli(), 10)
}

func parseExpirePayload(b []byte) (refs.Project, refs.PipelineID, error) {
	var pl expirePayload
	if err := json.Unmarshal(b, &pl); err != nil {
		return "", 0, fmt.Errorf("decoding expire task: %w", err)
	}
	p, err := refs.ParseProject(pl.Project)
	if err != nil {
		return "", 0, err
	}
	if pl.PipelineID < 1 {
		return "", 0, fmt.Errorf("expire task has pipeline id %d", pl.PipelineID)
	}
	return p, refs.PipelineID(pl.PipelineID), nil
}

func newSweepTask() *asynq.Task { return asynq.NewTask(TypeSweep, nil) }
