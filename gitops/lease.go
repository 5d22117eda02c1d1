package gitops

import (
	"context"
	"slices"
	"time"
)

// DefaultLeasePoll is how often a process waiting for another's fetch into
// a mirror asks the lease again.
const DefaultLeasePoll = 50 * time.Millisecond

// FetchLease is what processes sharing one repos root need to share
// fetches: a lease per mirror that one process at a time holds while it
// fetches, a sequence number for every fetch begun, and what the last
// successful one fetched. The domain implements it in Redis.
type FetchLease interface {
	// Poll answers the last successful fetch into the mirror and takes
	// its lease if it is free. Taken: Release must be called when the
	// fetch ended, saying whether it succeeded and what it fetched (or,
	// with false, when no fetch was needed after all). Not taken: another
	// process fetches now.
	Poll(ctx context.Context, name ProjectName) (LeaseState, error)
}

// LeaseState is one answer of FetchLease.Poll.
type LeaseState struct {
	// Taken is true when this process holds the lease now.
	Taken bool
	// Begun is the sequence number of the latest fetch begun by any
	// process (this one's, when Taken). Numbers only grow.
	Begun int64
	// Done is the sequence number of the latest fetch that succeeded, and
	// DoneRefspecs what it fetched.
	Done         int64
	DoneRefspecs []string
	// Release ends a taken lease.
	Release func(ok bool, refspecs []string)
}

func (f *Fetcher) leased(g *fetchGroup) bool { return f.Lease != nil && g.name != "" }

func (f *Fetcher) leasePoll() time.Duration {
	if f.LeasePoll > 0 {
		return f.LeasePoll
	}
	return DefaultLeasePoll
}

// await waits until this process may fetch batch b (release is then the
// lease's, or nil when the lease could not be asked), or until a fetch by
// another process made it unnecessary (skip): one that began after every
// caller of b had joined and fetched all b's refspecs. "Began after" is
// decided on the lease's own sequence, not on clocks: a fetch numbered above
// what the lease said after the last caller joined began after that caller.
func (f *Fetcher) await(ctx context.Context, g *fetchGroup, b *fetchBatch) (skip bool, release func(bool), err error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		f.mu.Lock()
		asked := b.callers // the poll below begins after these joined
		f.mu.Unlock()
		st, err := f.Lease.Poll(ctx, g.name)
		if err != nil {
			// Sharing across processes is a saving, not a condition: fetch.
			f.Root.logger().Warn("fetch lease unavailable, fetching without it", "project", string(g.name), "err", err)
			return false, nil, nil
		}
		f.mu.Lock()
		if b.covered == b.callers && b.covered > 0 && st.Done > b.need && covers(st.DoneRefspecs, b.refspecs) {
			if g.next == b {
				g.next = nil // closed under the same lock: nobody joins it now
			}
			f.mu.Unlock()
			if st.Taken {
				st.Release(false, nil) // not needed after all
			}
			return true, nil, nil
		}
		f.mu.Unlock()
		if st.Taken {
			// The batch closes after this; what it fetches is what the
			// lease will record, so read the refspecs when it ends.
			return false, func(ok bool) {
				f.mu.Lock()
				fetched := slices.Clone(b.refspecs)
				if g.next != nil && g.next != b {
					// Its callers joined while this process held the
					// lease, so no other fetch began meanwhile: any
					// fetch numbered above this one began after they
					// joined. Said before the lease is let go.
					g.next.need, g.next.covered = st.Begun, g.next.callers
				}
				f.mu.Unlock()
				st.Release(ok, fetched)
			}, nil
		}
		f.mu.Lock()
		if asked > b.covered {
			// Any fetch numbered above what this poll saw begun began
			// after the poll, so after the first asked callers joined.
			b.need, b.covered = st.Begun, asked
		}
		f.mu.Unlock()
		timer.Reset(f.leasePoll())
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false, nil, &UpstreamUnavailableError{Upstream: b.up.URL,
				Reason: "another process's fetch into this mirror did not end in time", Err: ctx.Err()}
		}
	}
}

// covers reports whether every refspec of want is in have.
func covers(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
