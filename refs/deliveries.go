package refs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Webhook deliveries: what was answered to a delivery id (so a host's
// redelivery is answered the same and changes nothing), and the time of the
// last webhook event applied to a pin (so a late delivery can be told from
// a retried pipeline). Both are small keys with a TTL, apart from the pin
// records, so no pin script has to know about them.

func (s *Store) deliveryKey(host, id string) string {
	// Delivery ids are whatever the host sends: hashed, so a key is bounded
	// and cannot collide across hosts.
	sum := sha256.Sum256([]byte(host + "\x00" + id))
	return s.prefix() + ":delivery:" + hex.EncodeToString(sum[:])
}

func (s *Store) eventTimeKey(p Project, id PipelineID) string {
	return s.base(p) + "hookat:" + id.String()
}

// RecallDelivery answers what was stored for a host's delivery id; ok is
// false when the id was not seen within its TTL.
func (s *Service) RecallDelivery(ctx context.Context, host, id string) (answer []byte, ok bool, err error) {
	b, err := s.Store.Client.Get(ctx, s.Store.deliveryKey(host, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("reading delivery", &StoreError{Op: "get delivery", Err: err})
	}
	return b, true, nil
}

// RememberDelivery stores the answer to a host's delivery id for ttl, unless
// one is stored already (the first answer stays the answer).
func (s *Service) RememberDelivery(ctx context.Context, host, id string, answer []byte, ttl time.Duration) error {
	if err := s.Store.Client.SetNX(ctx, s.Store.deliveryKey(host, id), answer, ttl).Err(); err != nil {
		return unavailable("recording delivery", &StoreError{Op: "set delivery", Err: err})
	}
	return nil
}

// EventTime answers the time of the latest webhook event applied to the
// pin (the host's own clock, as its payload says); zero when none was.
func (s *Service) EventTime(ctx context.Context, p Project, id PipelineID) (time.Time, error) {
	v, err := s.Store.Client.Get(ctx, s.Store.eventTimeKey(p, id)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, unavailable("reading event time", &StoreError{Op: "get event time", Err: err})
	}
	return msTime(v), nil
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

// RecordEventTime raises the pin's event time to t (never lowers it); it
// lives as long as a pin may.
func (s *Service) RecordEventTime(ctx context.Context, p Project, id PipelineID, t time.Time) error {
	ttl := s.Policy.MaxAge
	if ttl <= 0 {
		ttl = DefaultMaxAge
	}
	err := advanceScript.Run(ctx, s.Store.Client, []string{s.Store.eventTimeKey(p, id)},
		strconv.FormatInt(t.UnixMilli(), 10), msDur(ttl)).Err()
	if err != nil {
		return unavailable("recording event time", &StoreError{Op: "set event time", Err: err})
	}
	return nil
}
