package refs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Clock tells the time; tests pass one they can move.
type Clock interface {
	Now() time.Time
}

// SystemClock is this machine's clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// RedisClock is Redis's clock (TIME), read through this machine's: every
// replica stamps records and compares them with the same clock, so a replica
// whose clock is off neither deletes early nor keeps refs late. It measures
// its offset to Redis at most every RefreshEvery, so Now costs no round
// trip; between measurements it follows the local clock's rate.
type RedisClock struct {
	Client redis.UniversalClient
	// RefreshEvery is how often the offset is measured again. Zero: 10s.
	RefreshEvery time.Duration

	first      sync.Mutex // held by the first measurement, which all wait for
	measuring  sync.Mutex
	offset     atomic.Int64 // nanoseconds to add to the local clock
	measuredAt atomic.Int64 // local Unix nanoseconds of the last attempt; 0: never
}

// clockTimeout bounds one measurement of Redis's clock.
const clockTimeout = time.Second

// Now answers Redis's time now. Until Redis first answers it is the local
// time.
func (c *RedisClock) Now() time.Time {
	every := c.RefreshEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	if c.measuredAt.Load() == 0 {
		c.first.Lock()
		if c.measuredAt.Load() == 0 {
			c.measure()
		}
		c.first.Unlock()
	} else if time.Since(time.Unix(0, c.measuredAt.Load())) > every && c.measuring.TryLock() {
		c.measure()
		c.measuring.Unlock()
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// measure takes Redis's time against the middle of the round trip. A failed
// measurement keeps the last offset and is tried again after RefreshEvery.
func (c *RedisClock) measure() {
	ctx, cancel := context.WithTimeout(context.Background(), clockTimeout)
	defer cancel()
	before := time.Now()
	remote, err := c.Client.Time(ctx).Result()
	after := time.Now()
	c.measuredAt.Store(after.UnixNano())
	if err != nil {
		return
	}
	local := before.Add(after.Sub(before) / 2)
	c.offset.Store(int64(remote.Sub(local)))
}
