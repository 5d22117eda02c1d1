package mirrors

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
)

// FetchLeases is gitops.FetchLease in Redis, so that replicas sharing one
// repos root share fetches of a mirror: one replica at a time fetches, each
// fetch gets a number from a per-mirror counter, and the last successful
// one leaves its number and refspecs behind for the replicas that waited.
// The lease expires by itself after TTL, so a replica that died while
// fetching holds up the others at most that long.
type FetchLeases struct {
	Store *refs.Store
	// TTL is how long a lease lives unless released: the upstream timeout
	// plus a margin.
	TTL time.Duration
	// Logger hears of a lease that could not be released (it then expires
	// after TTL). Nil: slog.Default().
	Logger *slog.Logger
}

// pollScript answers the last successful fetch, and takes the lease if it
// is free (numbering the fetch) or else answers the latest number begun.
//
// KEYS[2] the fetch counter  KEYS[3] the last successful fetch
// ARGV[3] how long the counter and the record are kept (ms)
var pollScript = refs.NewLeaseScript(`
local done = redis.call('HMGET', KEYS[3], 'seq', 'refspecs')
local doneSeq, doneSpecs = tonumber(done[1] or '0'), done[2] or ''
if take() then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, seq, doneSeq, doneSpecs}
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
return {0, seq, doneSeq, doneSpecs}
`)

// releaseScript ends the lease if it is still this holder's, and records a
// successful fetch.
//
// KEYS[2] the fetch counter  KEYS[3] the last successful fetch
// ARGV[3] "1" after a success  ARGV[4] the fetch's number
// ARGV[5] its refspecs  ARGV[6] how long the record is kept (ms)
var releaseScript = refs.NewLeaseScript(`
drop()
if ARGV[3] == '1' then
  local cur = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
  if tonumber(ARGV[4]) > cur then
    redis.call('HSET', KEYS[3], 'seq', ARGV[4], 'refspecs', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
return 1
`)

// Poll implements gitops.FetchLease.
func (l *FetchLeases) Poll(ctx context.Context, name gitops.ProjectName) (gitops.LeaseState, error) {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = gitops.DefaultUpstreamTimeout + 10*time.Second
	}
	lease := refs.NewLease(l.Store.Client, l.Store.Keys.FetchLease(name), ttl)
	// The counter and the record outlive many leases, not forever.
	keep := strconv.FormatInt((24 * time.Hour).Milliseconds(), 10)
	keys := []string{l.Store.Keys.FetchSeq(name), l.Store.Keys.FetchDone(name)}
	res, err := lease.Run(ctx, pollScript, keys, keep).Slice()
	if err != nil || len(res) != 4 {
		return gitops.LeaseState{}, &refs.StoreError{Op: "fetch lease", Err: err}
	}
	num := func(v any) int64 { n, _ := v.(int64); return n }
	st := gitops.LeaseState{Taken: num(res[0]) == 1, Begun: num(res[1]), Done: num(res[2])}
	if s, _ := res[3].(string); s != "" {
		st.DoneRefspecs = strings.Split(s, "\n")
	}
	if st.Taken {
		seq := st.Begun
		st.Release = func(ok bool, refspecs []string) {
			// Not the request's context: the lease must end even when the
			// caller who started the fetch has gone.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			okArg := "0"
			if ok {
				okArg = "1"
			}
			if err := lease.Run(ctx, releaseScript, keys, okArg, seq, strings.Join(refspecs, "\n"), keep).Err(); err != nil {
				logger := l.Logger
				if logger == nil {
					logger = slog.Default()
				}
				logger.Warn("releasing a fetch lease failed; it expires by itself", "project", string(name), "ttl", ttl.String(), "err", err)
			}
		}
	}
	return st, nil
}
