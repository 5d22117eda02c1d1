package hooks

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refkeeper/refkeeper/refs"
)

// Deliveries is what the receiver remembers of webhook deliveries: what was
// answered to a delivery id (so a host's redelivery is answered the same and
// changes nothing), and the time of the last webhook event applied to a pin
// (so a late delivery can be told from a retried pipeline). RedisDeliveries
// keeps them; failures are transient (refs.IsUnavailable).
type Deliveries interface {
	// RecallDelivery answers what was stored for a host's delivery id; ok
	// is false when the id was not seen within its TTL.
	RecallDelivery(ctx context.Context, host, id string) (answer []byte, ok bool, err error)
	// RememberDelivery stores the answer to a host's delivery id for ttl,
	// unless one is stored already (the first answer stays the answer).
	RememberDelivery(ctx context.Context, host, id string, answer []byte, ttl time.Duration) error
	// EventTime answers the time of the latest webhook event applied to
	// the pin (the host's own clock, as its payload says); zero when none
	// was.
	EventTime(ctx context.Context, p refs.Project, id refs.PipelineID) (time.Time, error)
	// RecordEventTime raises the pin's event time to t (never lowers it).
	RecordEventTime(ctx context.Context, p refs.Project, id refs.PipelineID, t time.Time) error
}

// RedisDeliveries keeps Deliveries in Redis: small keys with a TTL (see
// refs.Keys), apart from the pin records, so no pin script has to know about
// them.
type RedisDeliveries struct {
	Client redis.UniversalClient
	Keys   refs.Keys
	// EventTTL is how long an event time is kept: as long as a pin may
	// live, the max-age. Zero: refs.DefaultMaxAge.
	EventTTL time.Duration
}

func storeFailed(op, redisOp string, err error) error {
	return refs.Unavailable(op, &refs.StoreError{Op: redisOp, Err: err})
}

// RecallDelivery implements Deliveries.
func (d *RedisDeliveries) RecallDelivery(ctx context.Context, host, id string) ([]byte, bool, error) {
	b, err := d.Client.Get(ctx, d.Keys.Delivery(host, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storeFailed("reading delivery", "get delivery", err)
	}
	return b, true, nil
}

// RememberDelivery implements Deliveries.
func (d *RedisDeliveries) RememberDelivery(ctx context.Context, host, id string, answer []byte, ttl time.Duration) error {
	if err := d.Client.SetNX(ctx, d.Keys.Delivery(host, id), answer, ttl).Err(); err != nil {
		return storeFailed("recording delivery", "set delivery", err)
	}
	return nil
}

// EventTime implements Deliveries.
func (d *RedisDeliveries) EventTime(ctx context.Context, p refs.Project, id refs.PipelineID) (time.Time, error) {
	v, err := d.Client.Get(ctx, d.Keys.EventTime(p, id)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, storeFailed("reading event time", "get event time", err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, nil // not a time this service wrote: as if none
	}
	return time.UnixMilli(ms).UTC(), nil
}

// advanceScript sets the key to ARGV[1] (ms) unless it holds a later time,
// and keeps it for ARGV[2] ms.
var advanceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// RecordEventTime implements Deliveries; the time lives for EventTTL.
func (d *RedisDeliveries) RecordEventTime(ctx context.Context, p refs.Project, id refs.PipelineID, t time.Time) error {
	ttl := d.EventTTL
	if ttl <= 0 {
		ttl = refs.DefaultMaxAge
	}
	err := advanceScript.Run(ctx, d.Client, []string{d.Keys.EventTime(p, id)},
		strconv.FormatInt(t.UnixMilli(), 10), ttl.Milliseconds()).Err()
	if err != nil {
		return storeFailed("recording event time", "set event time", err)
	}
	return nil
}
