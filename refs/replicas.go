package refs

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicaWaitTimeout is the longest a state change waits for its replicas.
const replicaWaitTimeout = time.Second

// ReplicasError is a change Redis's master has but fewer of its replicas
// than asked acknowledged within replicaWaitTimeout: it stands, and may
// be lost if the master fails now; retrying the request is safe.
type ReplicasError struct {
	Want, Got int
}

func (e *ReplicasError) Error() string {
	return fmt.Sprintf("%d of %d Redis replicas acknowledged the change within %v (the change stands)", e.Got, e.Want, replicaWaitTimeout)
}

// Replicated waits until WaitReplicas replicas have every write this process
// made to the project's records so far (Redis WAIT, up to a second). WAIT
// counts the replicas that have the last write of the connection it runs
// on, and a pooled connection's last write may be older than the request's
// (or than the write an idempotent retry found already done), so a write
// of its own goes first on the same connection: replication is one ordered
// stream, and whatever is before that write is covered by it. A Cluster
// waits on the master of the project's slot, where its records are.
func (s *Store) Replicated(ctx context.Context, p Project) error {
	if s.WaitReplicas <= 0 {
		return nil
	}
	var client redis.Cmdable = s.Client
	key := s.Keys.Replicated(p)
	if cc, ok := s.Client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return &StoreError{Op: "wait for replicas", Err: err}
		}
		client = node
	}
	var acked *redis.Cmd
	_, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, key, time.Now().UnixMilli(), time.Minute)
		// Pipeliner has no Wait; within the connection's read timeout.
		acked = pipe.Do(ctx, "wait", s.WaitReplicas, replicaWaitTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return &StoreError{Op: "wait for replicas", Err: err}
	}
	got, err := acked.Int()
	if err != nil {
		return &StoreError{Op: "wait for replicas", Err: err}
	}
	if got < s.WaitReplicas {
		return &StoreError{Op: "wait for replicas", Err: &ReplicasError{Want: s.WaitReplicas, Got: got}}
	}
	return nil
}

// replicated is Store.Replicated in the domain's terms: a shortfall is
// unavailable (503, safe to retry), the change made stands.
func (s *Service) replicated(ctx context.Context, p Project) error {
	if err := s.Store.Replicated(ctx, p); err != nil {
		return Unavailable("waiting for Redis replicas", err)
	}
	return nil
}
