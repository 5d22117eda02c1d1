package gitops

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// createRequest is one Create call waiting for the transaction its ref goes
// into.
type createRequest struct {
	ctx     context.Context // the caller's: once it ends, nobody waits
	ref     RefName
	id      ObjectID
	created bool
	err     error
	locked  string // the ref's lock file was held: the caller waits, then asks again
	done    chan struct{}
}

// groupLockTimeout is how long the group commit's git waits for a ref's
// lock. The writer is shared by every create of the repository, so it must
// not wait on one ref (a sweep batch holds its refs' locks for a second or
// more): a create whose ref is locked leaves the transaction, and its own
// caller waits for the lock and queues again.
const groupLockTimeout = 50 * time.Millisecond

// maxCreateBatch is the most refs one group-commit transaction holds: a
// transaction's locks are all held until it commits, and one failing ref
// sends the whole batch round again.
const maxCreateBatch = 1000

// writerIdle is how long an unused writer process is kept.
const writerIdle = 10 * time.Second

// Create makes ref point at id if the ref does not exist: an atomic
// create-if-absent across goroutines and processes. It answers created=true
// when this call created it, created=false with a nil error when the ref
// already points at id, and MismatchingStateError when it points elsewhere.
//
// A ref that is there already answers at once, from the ref (a repeated pin
// of the same pipeline), and never goes to git: in a shared transaction it
// would fail every other create with it. Creates of absent refs arriving
// together are written together (group commit): while one transaction runs,
// new calls queue, and the next transaction takes up to maxCreateBatch of
// them. A git transaction costs about the same for one ref as for a hundred,
// so under load this is what keeps pins cheap; alone, a call waits for
// nothing.
//
// When ctx ends the call stops waiting and answers ctx's error; a
// transaction git has begun with its ref runs to its end, so the ref may
// then exist.
func (r *Repo) Create(ctx context.Context, ref RefName, id ObjectID) (created bool, err error) {
	if err := checkWritable(ref); err != nil {
		return false, err
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("creating %s: %w", ref, err)
		}
		// A lock first: the ref being there means nothing while another
		// writer holds it, since that writer may be deleting it (a deleter
		// checks its claim under the lock, then commits; a re-pin that
		// waited for that lock must not answer before the delete it is
		// meant to follow). git removes a ref before its lock, so once the
		// lock is seen gone, what is read next is the ref that writer left.
		if lock := r.heldLock(ref, false); lock != "" {
			if err := r.awaitLock(ctx, ref, lock, attempt+1 >= maxRounds); err != nil {
				return false, err
			}
			continue
		}
		if settled, err := r.answerFromRef(ref, id); settled {
			return false, err
		}
		req := &createRequest{ctx: ctx, ref: ref, id: id, done: make(chan struct{})}
		r.createMu.Lock()
		r.createQ = append(r.createQ, req)
		if !r.draining {
			r.draining = true
			go r.drainCreates()
		}
		r.createMu.Unlock()
		select {
		case <-req.done:
		case <-ctx.Done():
			return false, fmt.Errorf("creating %s: %w", ref, ctx.Err())
		}
		if req.locked == "" {
			return req.created, req.err
		}
		// Another writer holds the ref (a sweep deleting it, a racing
		// replica creating it): wait here, not in the shared writer, then
		// answer from what it left.
		if err := r.awaitLock(ctx, ref, req.locked, attempt+1 >= maxRounds); err != nil {
			return false, err
		}
	}
}

// answerFromRef answers a create of ref at id from the ref as it is now:
// settled when the ref exists (at id: done, nil; elsewhere: a mismatch) or
// cannot be read.
func (r *Repo) answerFromRef(ref RefName, id ObjectID) (settled bool, err error) {
	actual, err := r.ResolveRef(ref)
	var notFound *RefNotFoundError
	switch {
	case err == nil && actual == id:
		return true, nil
	case err == nil:
		return true, &MismatchingStateError{Ref: ref, Expected: ZeroID, Actual: actual}
	case errors.As(err, &notFound):
		return false, nil
	}
	return true, err
}

// awaitLock waits for the lock another writer holds on ref, after a create
// found it held; nil means ask again. On the last of its tries (maxRounds)
// a create does not wait: a lock still held is *LockedError.
func (r *Repo) awaitLock(ctx context.Context, ref RefName, lock string, last bool) error {
	if r.clearIfStale(lock) {
		return nil // a crashed writer's
	}
	if last {
		return &LockedError{Ref: ref, Path: lock}
	}
	if held, err := r.waitUnlocked(ctx, ref); err != nil {
		return fmt.Errorf("waiting for the lock of %s: %w", ref, err)
	} else if held != "" {
		return &LockedError{Ref: ref, Path: held}
	}
	return nil
}

// drainCreates writes what is queued, a transaction at a time, until the
// queue is empty. It keeps the repository's writer process for the next
// burst; an idle one is closed after writerIdle.
func (r *Repo) drainCreates() {
	for {
		r.createMu.Lock()
		n := min(len(r.createQ), maxCreateBatch)
		batch := r.createQ[:n:n]
		r.createQ = r.createQ[n:]
		if len(r.createQ) == 0 {
			r.createQ = nil // let the backing array go
		}
		if len(batch) == 0 {
			r.draining = false
			if r.writer != nil && r.idleTimer == nil {
				r.idleTimer = time.AfterFunc(writerIdle, r.closeIdleWriter)
			}
			r.createMu.Unlock()
			return
		}
		r.createMu.Unlock()
		r.createBatch(batch)
		created := 0
		for _, q := range batch {
			if q.created {
				created++
			}
			close(q.done)
		}
		r.notePacking(created)
	}
}

// closeIdleWriter ends the writer process if no create used it for
// writerIdle; a drainer at work keeps it.
func (r *Repo) closeIdleWriter() {
	r.createMu.Lock()
	r.idleTimer = nil
	w := r.writer
	switch {
	case r.draining || w == nil:
		w = nil
	case time.Since(w.used) < writerIdle:
		r.idleTimer = time.AfterFunc(writerIdle, r.closeIdleWriter)
		w = nil
	default:
		r.writer = nil
	}
	r.createMu.Unlock()
	if w != nil {
		_ = w.Close()
	}
}

// writerFor returns the repository's writer process, starting one if there
// is none. A writer is retired once it has run half the git timeout, so the
// timeout, which bounds the process and not one transaction, never ends a
// writer that works. Only the drainer calls it.
func (r *Repo) writerFor() (*Updater, error) {
	r.createMu.Lock()
	w := r.writer
	r.writer = nil
	r.createMu.Unlock()
	if w != nil && time.Since(w.born) < r.root.gitTimeout()/2 {
		return w, nil
	}
	if w != nil {
		go w.Close()
	}
	// Not the caller's context: the writer is shared, and a transaction
	// cut short in its commit would leave some refs written and others not.
	return r.newUpdater(context.Background(), groupLockTimeout)
}

// transactCreates runs one create transaction in the repository's writer
// process, and keeps the process for the next one unless git failed. Only
// the drainer calls it.
func (r *Repo) transactCreates(updates []Update) error {
	w, err := r.writerFor()
	if err != nil {
		return err
	}
	err = w.Start()
	for i := 0; err == nil && i < len(updates); i++ {
		err = w.Create(updates[i].Ref, updates[i].New)
	}
	if err == nil {
		err = w.Commit()
	}
	if err != nil {
		_ = w.Close() // after a refused transaction git has exited
		return err
	}
	r.createMu.Lock()
	r.writer = w
	r.createMu.Unlock()
	return nil
}

// createBatch creates the refs of a batch in as few transactions as
// possible and sets every request's answer. The first request for a ref goes
// into the transaction; later ones for the same ref are answered from its
// outcome, as if they had come just after it. A request whose caller has
// gone is left out.
func (r *Repo) createBatch(batch []*createRequest) {
	first := make(map[RefName]*createRequest, len(batch))
	var unique, dups []*createRequest
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.err = err
			continue
		}
		if _, seen := first[q.ref]; seen {
			dups = append(dups, q)
			continue
		}
		first[q.ref] = q
		unique = append(unique, q)
	}
	pending := unique
	retryRefused(func(round int, last bool) bool {
		if len(pending) == 0 {
			return false
		}
		updates := make([]Update, len(pending))
		for i, q := range pending {
			updates[i] = Update{Ref: q.ref, New: q.id, Old: ZeroID}
		}
		terr := r.transactCreates(updates)
		if terr == nil {
			for _, q := range pending {
				q.created = true
			}
			return false
		}
		// Not a caller's context: the transaction is shared.
		if refusalIsFinal(context.Background(), terr) {
			for _, q := range pending {
				q.err = terr
			}
			return false
		}
		// git refused the whole transaction: a ref created since its
		// caller looked, a held lock, a crashed writer's lock file (git
		// waits its lock timeout for it first). Stale locks are removed
		// here rather than looked for before every transaction, which
		// would cost a system call per pin. Then learn from each ref's
		// state which requests are settled, and retry the rest together.
		names := make([]RefName, len(pending))
		for i, q := range pending {
			names[i] = q.ref
		}
		cleared := r.clearStaleLocks(names, false) > 0
		var retry []*createRequest
		for _, q := range pending {
			if !r.settleFromState(q) {
				retry = append(retry, q)
			}
		}
		// Nothing settled and no lock removed: the cause may still have
		// gone (another replica removed the stale lock), so try once more
		// before giving up.
		if (len(retry) == len(pending) && !cleared && round > 0) || last {
			for _, q := range retry {
				q.err = r.explain(terr)
			}
			return false
		}
		pending = retry
		return len(pending) > 0
	})

	for _, q := range dups {
		f := first[q.ref]
		var mismatch *MismatchingStateError
		switch {
		case f.locked != "":
			q.locked = f.locked // its caller waits too
		case f.err == nil && f.id == q.id:
			// There at the same SHA: success, created by the other call.
		case f.err == nil:
			q.err = &MismatchingStateError{Ref: q.ref, Expected: ZeroID, Actual: f.id}
		case errors.As(f.err, &mismatch) && mismatch.Actual == q.id:
		case errors.As(f.err, &mismatch):
			q.err = &MismatchingStateError{Ref: q.ref, Expected: ZeroID, Actual: mismatch.Actual}
		default:
			q.err = f.err
		}
	}
}

// settleFromState answers a request whose transaction failed from the ref's
// state now: held by a lock (q.locked), there at the same SHA (done), or
// elsewhere (mismatch). It reports false when the state explains nothing:
// absent, unlocked.
func (r *Repo) settleFromState(q *createRequest) bool {
	// A lock first, as in Create.
	if lock := r.heldLock(q.ref, false); lock != "" {
		q.locked = lock
		return true
	}
	settled, err := r.answerFromRef(q.ref, q.id)
	q.err = err
	return settled
}
