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
	locked  string // the ref's lock file was held: the caller waits, then asks again
	done    chan struct{}
}

// groupLockTimeout is how long the group commit's git waits for a ref's
// lock. The writer is shared by every create of the repository, so it must
// not wait on one ref (a sweep batch holds its refs' locks for a second or
// more): a create whose ref is locked leaves the transaction, and its own
// caller waits for the lock and queues again.
const groupLockTimeout = 50 * time.Millisecond

// lockedRetries bounds how often a create queues again after its ref's lock
// went away.
const lockedRetries = 3

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
	for attempt := 0; ; attempt++ {
		req := &createRequest{ref: ref, id: id, done: make(chan struct{})}
		r.createMu.Lock()
		r.createQ = append(r.createQ, req)
		if !r.draining {
			r.draining = true
			go r.drainCreates()
		}
		r.createMu.Unlock()
		<-req.done
		if req.locked == "" {
			return req.created, req.err
		}
		// Another writer holds the ref (a sweep deleting it, a racing
		// replica creating it): wait here, not in the shared writer.
		if err := r.awaitLock(ref, req.locked, attempt); err != nil {
			return false, err
		}
		// That writer is done. A ref it left is the answer git would give
		// now; queueing again would take the lock only to find it, and
		// among many racing creators could find the lock held each time.
		if actual, err := r.ResolveRef(ref); err == nil {
			if actual == id {
				return false, nil
			}
			return false, &MismatchingStateError{Ref: ref, Expected: ZeroID, Actual: actual}
		}
	}
}

// awaitLock waits for the lock another writer holds on ref, after a create's
// attempt found it held; nil means try again.
func (r *Repo) awaitLock(ref RefName, lock string, attempt int) error {
	if r.waitUnlocked(ref) != "" || attempt+1 >= lockedRetries {
		return &LockedError{Path: lock}
	}
	return nil
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
		if w, err = r.startWriter(groupLockTimeout); err != nil {
			return err
		}
	}
	start := time.Now()
	err := w.transact(updates)
	r.root.observe(updates, start, err)
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
		// git refused the whole transaction. A crashed writer's lock file
		// is one cause (git waits its lock timeout for it first): stale ones
		// are removed here rather than looked for before every transaction,
		// which would cost a system call per pin. Then learn from each ref's
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
		if (len(retry) == len(pending) && !cleared && round > 0) || round+1 >= maxBatchRounds {
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
// elsewhere (mismatch). It reports false when the state explains nothing: absent,
// unlocked.
func (r *Repo) settleFromState(q *createRequest) bool {
	// A lock first: the ref being there means nothing while another writer
	// holds it, since that writer may be deleting it (a deleter checks its
	// claim under the lock, then commits; a re-pin that waited for that lock
	// must not answer before the delete it is meant to follow). The caller
	// waits for the lock to go and asks again.
	if lock := r.heldLock(q.ref, false); lock != "" {
		q.locked = lock
		return true
	}
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
	return false
}

// CreateChecked creates ref at id if it is absent and allow, asked while git
// holds the ref's lock, agrees: a create that must not race a delete decided
// elsewhere (restoring the ref of a pin whose record could be deleted at any
// moment). It answers created=false with a nil error when allow refused or
// the ref already points at id, and MismatchingStateError when it points
// elsewhere. It bypasses the group commit: it is rare, and its lock must be
// held only for its own check.
func (r *Repo) CreateChecked(ref RefName, id ObjectID, allow func() (bool, error)) (created bool, err error) {
	if err := checkWritable(ref); err != nil {
		return false, err
	}
	check := func([]Update) ([]bool, error) {
		ok, err := allow()
		return []bool{ok}, err
	}
	for round := 0; ; round++ {
		declined, terr := r.transactChecked([]Update{{Ref: ref, New: id, Old: ZeroID}}, check)
		if terr == nil {
			return !declined[0], nil
		}
		var cerr *CheckError
		if errors.As(terr, &cerr) {
			return false, terr
		}
		if round == 0 && r.clearStaleLocks([]RefName{ref}, false) > 0 {
			continue
		}
		q := &createRequest{ref: ref, id: id}
		if !r.settleFromState(q) {
			return false, r.explain(terr)
		}
		if q.locked == "" {
			return false, q.err
		}
		if err := r.awaitLock(ref, q.locked, round); err != nil {
			return false, err
		}
	}
}
