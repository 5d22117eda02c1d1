package refs

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Redis may lose writes it acknowledged: a failover to a replica that lagged,
// a restart from an older snapshot. What it then lost cannot be listed, but
// that it may have lost something can be seen: each start of a Redis server
// has a new run id, and a replica promoted to master starts a new
// replication id. The store keeps the pair it last saw under a key of its
// own; a sweep that finds the pair changed, or the key gone (the data
// flushed), reconciles every project at once instead of waiting for the
// projects' reconcile markers to expire, which may have survived the loss.

// Incarnation names the data set Redis serves now: the run id and
// replication id of the master (of every master, for a Cluster). Empty when
// the server does not tell (an embedded Redis, an ACL without INFO): then
// only a vanished marker shows a loss.
func (s *Store) Incarnation(ctx context.Context) (string, error) {
	if cc, ok := s.Client.(*redis.ClusterClient); ok {
		var (
			mu  sync.Mutex
			ids []string
		)
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			id, err := incarnationOf(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, id)
			return err
		})
		if err != nil {
			return "", &StoreError{Op: "read server ids", Err: err}
		}
		sort.Strings(ids)
		return strings.Join(ids, ","), nil
	}
	id, err := incarnationOf(ctx, s.Client)
	if err != nil {
		return "", &StoreError{Op: "read server ids", Err: err}
	}
	return id, nil
}

// incarnationOf reads one server's run id and replication id.
func incarnationOf(ctx context.Context, c redis.Cmdable) (string, error) {
	server, err := c.Info(ctx, "server").Result()
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return "", nil // answered, but not this
	}
	if err != nil {
		return "", err
	}
	repl, err := c.Info(ctx, "replication").Result()
	if errors.As(err, &rerr) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return infoField(server, "run_id") + "/" + infoField(repl, "master_replid"), nil
}

// infoField answers one field of an INFO answer.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// LastIncarnation answers what MarkIncarnation wrote last, and false when the
// key is gone (never written, or lost with the data).
func (s *Store) LastIncarnation(ctx context.Context) (string, bool, error) {
	v, err := s.Client.Get(ctx, s.Keys.Incarnation()).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, &StoreError{Op: "read incarnation", Err: err}
	}
	return v, true, nil
}

// MarkIncarnation records that every project was reconciled against the data
// set inc names.
func (s *Store) MarkIncarnation(ctx context.Context, inc string) error {
	if err := s.Client.Set(ctx, s.Keys.Incarnation(), inc, 0).Err(); err != nil {
		return &StoreError{Op: "write incarnation", Err: err}
	}
	return nil
}
