package refs

import (
	"context"
	"errors"
	"time"
)

// ExpireResult is what one run of a project's due deletions did.
type ExpireResult struct {
	Deleted int // refs deleted
	Purged  int // records of pins deleted more than max-age ago, dropped
	// NextDue is when a record of the project is next due under the policy
	// in force; zero: none is.
	NextDue time.Time
}

// ExpireDue deletes the refs of every pin of the project that is due now,
// in batches of one git transaction each, and purges records deleted for
// max-age; see expireProject. Safe to run any number of times, from any
// number of processes: only one deletes at a time, and the others' requests
// become its next round.
func (s *Service) ExpireDue(ctx context.Context, p Project) (ExpireResult, error) {
	var res SweepResult
	err := s.expireProject(ctx, p, &res)
	out := ExpireResult{Deleted: res.Deleted, Purged: res.Purged}
	if err != nil {
		return out, err
	}
	next, ok, err := s.Store.NextDue(ctx, p, s.Policy.MaxAge)
	if err != nil {
		return out, Unavailable("reading next due time", err)
	}
	if ok {
		out.NextDue = next
	}
	return out, nil
}

// expire processes pins the due index says are due: purge deleted records,
// claim the rest and delete their refs in one batch. It answers the number of
// refs deleted and of records purged.
func (s *Service) expire(ctx context.Context, p Project, ids []PipelineID) (deleted, purged int, err error) {
	repo, err := s.open(p)
	var nf *ProjectNotFoundError
	if errors.As(err, &nf) {
		repo = nil // the repository is gone: only records are left to settle
	} else if err != nil {
		return 0, 0, err
	}
	now := s.now()
	token := NewToken()
	outs, err := s.Store.ClaimDue(ctx, p, ids, now, s.Policy.MaxAge, token)
	if err != nil {
		return 0, 0, Unavailable("claiming pins", err)
	}
	var claimed []Pin
	var gone []PipelineID
	for i, out := range outs {
		switch out.Status {
		case statusClaimed:
			claimed = append(claimed, out.Pin)
		case statusDeleted:
			gone = append(gone, ids[i])
		}
	}
	pouts, err := s.Store.Purge(ctx, p, gone, now, s.Policy.MaxAge)
	if err != nil {
		return 0, 0, Unavailable("purging pins", err)
	}
	for _, out := range pouts {
		if out.Status == statusPurged {
			purged++
		}
	}
	if len(claimed) == 0 {
		return 0, purged, nil
	}
	if repo == nil {
		// No repository, so no ref: the records just become deleted.
		return 0, purged, s.commitDeletes(ctx, nil, p, claimed, token)
	}
	deleted, _, err = s.deleteClaimed(ctx, repo, p, claimed, token)
	return deleted, purged, err
}

// expireProject deletes what is due in the project, holding its expiry
// lease: one deleter per project at a time, across processes, so that
// deleters never take each other's claims or wait on each other's
// packed-refs.lock. A deleter that finds the lease held leaves a note, and
// the holder goes round again before it lets go: what became due while it
// worked goes into its next batch. So a burst of expiries is deleted in a
// few transactions, each as large as what was due when it began.
func (s *Service) expireProject(ctx context.Context, p Project, res *SweepResult) error {
	lease := newExpiryLease(s.Store, p, NewToken())
	held, err := lease.acquire(ctx)
	if err != nil {
		return Unavailable("taking expiry lease", err)
	}
	if !held {
		return nil // the holder goes round again for this request
	}
	work, stop := keepExpiryLease(ctx, lease)
	defer stop()
	for {
		err := s.expireAllDue(work, p, res)
		final := err != nil
		// Let go even if the caller has gone: a lease left behind would hold
		// up the project's deletions until it runs out.
		rctx, cancel := Settling(ctx)
		again, rerr := lease.release(rctx, final)
		if final && again {
			// A request came in meanwhile that this run will not serve.
			s.schedule(rctx, p, s.now())
		}
		cancel()
		switch {
		case final:
			return err
		case rerr != nil:
			return Unavailable("releasing expiry lease", rerr)
		case !again:
			return nil
		}
	}
}

// keepExpiryLease renews the held expiry lease every third of
// its time until stop is called, so that a holder that died holds the
// project up for one lease time at most. The context it answers is
// cancelled if the lease is lost (not renewed in time): another deleter may
// hold it by then, and the work stops before its next batch.
func keepExpiryLease(ctx context.Context, lease *expiryLease) (context.Context, func()) {
	work, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(expiryLeaseTime / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-work.Done():
				return
			case <-tick.C:
			}
			held, err := lease.renew(work)
			if err == nil && !held {
				cancel(errExpiryLeaseLost)
				return
			}
			// A failed renewal is tried again at the next tick, within the
			// lease's time.
		}
	}()
	return work, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

var errExpiryLeaseLost = errors.New("the expiry lease ran out")

// expireAllDue works through what is due in a project, a batch at a time.
func (s *Service) expireAllDue(ctx context.Context, p Project, res *SweepResult) error {
	for round := 0; round < maxDueRounds; round++ {
		if err := context.Cause(ctx); errors.Is(err, errExpiryLeaseLost) {
			return &UnavailableError{Op: "expiring pins", Cause: err}
		}
		ids, err := s.Store.Due(ctx, p, s.now(), s.Policy.MaxAge, sweepBatch)
		if err != nil {
			return Unavailable("listing due pins", err)
		}
		if len(ids) == 0 {
			return nil
		}
		before := res.Deleted + res.Purged
		deleted, purged, err := s.expire(ctx, p, ids)
		res.Deleted += deleted
		res.Purged += purged
		if err != nil {
			return err
		}
		if len(ids) < sweepBatch || res.Deleted+res.Purged == before {
			return nil
		}
	}
	return nil
}

// expiryLeaseTime is how long a deleter holds a project's due deletions
// without renewing its lease; its holder renews it every third of that while
// it works, so one that died holds the project's deletions up this long at
// most.
const expiryLeaseTime = 15 * time.Second

// expiryLease is the lease on a project's due deletions: one deleter at a
// time per project, so that two never take each other's claims or fight
// over packed-refs.lock. A deleter that finds the lease held leaves a note
// instead ("again"), and the holder goes round once more before it lets go:
// whatever became due while it worked is deleted by it, in its next batch.
// The note lives as long as the lease.
type expiryLease struct {
	lease *Lease
	note  string
}

func newExpiryLease(st *Store, p Project, token string) *expiryLease {
	key, note := st.Keys.ExpiryLease(p)
	return &expiryLease{lease: &Lease{Client: st.Client, Key: key, TTL: expiryLeaseTime, Token: token}, note: note}
}

// acquireExpiryScript answers 1 with the lease taken, 0 with the note left.
var acquireExpiryScript = NewLeaseScript(`
if take() then
  redis.call('DEL', KEYS[2])
  return 1
end
redis.call('SET', KEYS[2], '1', 'PX', TTL)
return 0
`)

// renewExpiryScript extends a held lease, and a note left for its holder
// with it: a note that lapsed during a long round would let the holder go
// without the round it asks for. 0 when the lease is not held any more.
var renewExpiryScript = NewLeaseScript(`
if not renew() then return 0 end
redis.call('PEXPIRE', KEYS[2], TTL)
return 1
`)

// releaseExpiryScript lets a held lease go, unless a note was left: then it
// keeps it and answers 1 (go round again). With ARGV[3] "1" it lets go
// either way and answers 1 when a note was left (someone must come back).
// It answers 0 when nothing more is asked, -1 for a lease not held.
var releaseExpiryScript = NewLeaseScript(`
if not held() then return -1 end
local again = redis.call('DEL', KEYS[2])
if again == 1 and ARGV[3] ~= '1' then
  renew()
  return 1
end
drop()
return again
`)

// acquire takes the lease, or leaves a note for its holder to go round
// again (false).
func (l *expiryLease) acquire(ctx context.Context) (bool, error) {
	n, err := l.lease.Run(ctx, acquireExpiryScript, []string{l.note}).Int()
	if err != nil {
		return false, &StoreError{Op: "take expiry lease", Err: err}
	}
	return n == 1, nil
}

// renew extends a held lease; false when it was lost.
func (l *expiryLease) renew(ctx context.Context) (bool, error) {
	n, err := l.lease.Run(ctx, renewExpiryScript, []string{l.note}).Int()
	if err != nil {
		return false, &StoreError{Op: "renew expiry lease", Err: err}
	}
	return n == 1, nil
}

// release lets the lease go. again is true when another deleter left a
// note meanwhile: unless final, the lease is then kept and the caller goes
// round again; if final, someone must come back for the project.
func (l *expiryLease) release(ctx context.Context, final bool) (again bool, err error) {
	f := "0"
	if final {
		f = "1"
	}
	n, err := l.lease.Run(ctx, releaseExpiryScript, []string{l.note}, f).Int()
	if err != nil {
		return false, &StoreError{Op: "release expiry lease", Err: err}
	}
	return n == 1, nil
}
