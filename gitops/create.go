package gitops

import (
	"errors"
	"time"
)

// createRequest is one Create call waiting for the transaction its ref goes
// into.
type createRequest struct {
	ref     RefName
	id      ObjectID
	created bool
	err     error
	done    chan struct{}
}

// Create makes ref point at id if the ref does not exist: an atomic
// create-if-absent across goroutines and processes. It answers created=true
// when this call created it, created=false with a nil error when the ref
// already points at id, and MismatchingStateError when it points elsewhere.
//
// Creates arriving together are written together (group commit): while one
// transaction runs, new calls queue, and the next transaction takes them all.
// A git process costs milliseconds whether it writes one ref or a hundred, so
// under load this is what keeps pins cheap; alone, a call waits for nothing.
func (r *Repo) Create(ref RefName, id ObjectID) (created bool, err error) {
	if err := checkWritable(ref); err != nil {
		return false, err
	}
	req := &createRequest{ref: ref, id: id, done: make(chan struct{})}
	r.createMu.Lock()
	r.createQ = append(r.createQ, req)
	if !r.draining {
		r.draining = true
		go r.drainCreates()
	}
	r.createMu.Unlock()
	<-req.done
	return req.created, req.err
}

// drainCreates writes what is queued, a transaction at a time, until the
// queue is empty. It keeps the repository's writer process for the next
// burst; an idle one is closed after writerIdle.
func (r *Repo) drainCreates() {
	for {
		r.createMu.Lock()
		batch := r.createQ
		r.createQ = nil
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
	defer r.createMu.Unlock()
	r.idleTimer = nil
	if r.draining || r.writer == nil {
		return
	}
	if time.Since(r.writer.used) < writerIdle {
		r.idleTimer = time.AfterFunc(writerIdle, r.closeIdleWriter)
		return
	}
	r.writer.close()
	r.writer = nil
}

// transactCreates runs a create transaction in the repository's writer
// process, starting one if there is none (or the last one failed). Only the
// drainer calls it.
func (r *Repo) transactCreates(updates []Update) error {
	r.createMu.Lock()
	w := r.writer
	r.createMu.Unlock()
	if w == nil {
		var err error
		if w, err = r.startWriter(); err != nil {
			return err
		}
	}
	err := w.transact(updates)
	r.createMu.Lock()
	if err != nil {
		r.writer = nil // the process is gone
	} else {
		r.writer = w
	}
	r.createMu.Unlock()
	return err
}

// createBatch creates the refs of a batch in as few transactions as
// possible and sets every request's answer. The first request for a ref goes
// into the transaction; later ones for the same ref are answered from its
// outcome, as if they had come just after it.
func (r *Repo) createBatch(batch []*createRequest) {
	first := make(map[RefName]*createRequest, len(batch))
	var unique, dups []*createRequest
	for _, q := range batch {
		if _, seen := first[q.ref]; seen {
			dups = append(dups, q)
			continue
		}
		first[q.ref] = q
		unique = append(unique, q)
	}
	names := make([]RefName, len(unique))
	for i, q := range unique {
		names[i] = q.ref
	}
	r.clearStaleLocks(names, false)

	pending := unique
	for round := 0; len(pending) > 0; round++ {
		updates := make([]Update, len(pending))
		for i, q := range pending {
			updates[i] = Update{Ref: q.ref, New: q.id, Old: ZeroID}
		}
		terr := r.transactCreates(updates)
		if terr == nil {
			for _, q := range pending {
				q.created = true
			}
			break
		}
		// git refused the whole transaction: learn from each ref's state
		// which ones are settled, and retry the rest together.
		var retry []*createRequest
		for _, q := range pending {
			if !r.settleFromState(q) {
				retry = append(retry, q)
			}
		}
		if len(retry) == len(pending) || round+1 >= maxBatchRounds {
			for _, q := range retry {
				q.err = r.explain(terr)
			}
			break
		}
		pending = retry
	}

	for _, q := range dups {
		f := first[q.ref]
		var mismatch *MismatchingStateError
		switch {
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
// state now: there at the same SHA (done), elsewhere (mismatch), or held by a
// lock. It reports false when the state explains nothing: absent, unlocked.
func (r *Repo) settleFromState(q *createRequest) bool {
	actual, err := r.ResolveRef(q.ref)
	var notFound *RefNotFoundError
	switch {
	case err == nil && actual == q.id:
		return true
	case err == nil:
		q.err = &MismatchingStateError{Ref: q.ref, Expected: ZeroID, Actual: actual}
		return true
	case !errors.As(err, &notFound):
		q.err = err
		return true
	}
	if lock := r.heldLock(q.ref, false); lock != "" {
		q.err = &LockedError{Path: lock}
		return true
	}
	return false
}
