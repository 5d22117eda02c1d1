package refs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is one holder's lease on a key in Redis, the only lease primitive of
// the service: taken with SET NX PX under the holder's random token, renewed
// and let go only by that holder, and gone by itself after TTL when its
// holder dies. The service's three leases (a project's due deletions, a
// mirror's housekeeping, a mirror's upstream fetches) are each a Lease and
// a LeaseScript that keeps what they need beside it in the same atomic step:
// a note for the holder, a done marker, a fetch counter.
type Lease struct {
	Client redis.UniversalClient
	// Key is the lease's key (see Keys).
	Key string
	// TTL is how long the lease lives unless renewed or let go.
	TTL time.Duration
	// Token names the holder; NewLease draws a random one.
	Token string
}

// NewLease is a lease on key with a fresh random token.
func NewLease(c redis.UniversalClient, key string, ttl time.Duration) *Lease {
	return &Lease{Client: c, Key: key, TTL: ttl, Token: NewToken()}
}

// NewToken returns a random token naming a lease holder or a deletion claim.
func NewToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// luaLease is what every LeaseScript starts with: KEYS[1] is the lease,
// ARGV[1] the holder's token and ARGV[2] the lease time in ms; a script's
// own keys and arguments follow from KEYS[2] and ARGV[3].
//
//	take()   takes the lease if it is free; true when taken
//	held()   whether this holder holds it
//	renew()  extends it if held; false when it was lost
//	drop()   lets it go if held; false when it was not
const luaLease = `
local LEASE, TOKEN, TTL = KEYS[1], ARGV[1], ARGV[2]
local function take() return redis.call('SET', LEASE, TOKEN, 'NX', 'PX', TTL) ~= false end
local function held() return redis.call('GET', LEASE) == TOKEN end
local function renew()
  if not held() then return false end
  redis.call('PEXPIRE', LEASE, TTL)
  return true
end
local function drop()
  if not held() then return false end
  redis.call('DEL', LEASE)
  return true
end
`

// LeaseScript is a script that runs with a lease (see luaLease).
type LeaseScript struct{ script *redis.Script }

// NewLeaseScript makes a script of body, which may call take, held, renew
// and drop.
func NewLeaseScript(body string) LeaseScript {
	return LeaseScript{script: redis.NewScript(luaLease + body)}
}

// Run runs script with the lease: keys and args are the script's own.
func (l *Lease) Run(ctx context.Context, script LeaseScript, keys []string, args ...any) *redis.Cmd {
	return script.script.Run(ctx, l.Client, append([]string{l.Key}, keys...),
		append([]any{l.Token, l.TTL.Milliseconds()}, args...)...)
}
