package gitops

import (
	"context"
	"fmt"
)

// Check is asked, while git holds the lock of every ref of a transaction
// (after Prepare, before Commit), which updates may go ahead: keep[i] false
// leaves updates[i] out. No other writer can change those refs meanwhile, so
// what the caller learns elsewhere (a record in Redis) holds for the ref at
// the moment it changes. A check must be quick: writers of the same refs and
// of packed-refs wait for it. An error aborts the transaction.
type Check func(updates []Update) (keep []bool, err error)

// CheckError is a Check that failed; the transaction was aborted and no ref
// changed.
type CheckError struct{ Err error }

func (e *CheckError) Error() string { return "checking updates under lock: " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// transactChecked applies updates in one transaction of a new Updater,
// leaving out those check refuses (declined[i]); a nil check commits them
// all. After a refusal the transaction is aborted and the rest prepared
// again, so what is committed was checked under its own locks.
//
// Git runs on a context that does not end with ctx: a transaction cut short
// in its commit would leave some refs written and others not. The check
// itself sees ctx (a caller gone makes it fail, which aborts), and the
// Root's GitTimeout bounds git.
func (r *Repo) transactChecked(ctx context.Context, updates []Update, check Check) (declined []bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := r.NewUpdater(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	defer u.Close()
	declined = make([]bool, len(updates))
	for {
		var active []Update
		var index []int
		for i, up := range updates {
			if !declined[i] {
				active = append(active, up)
				index = append(index, i)
			}
		}
		if len(active) == 0 {
			return declined, nil
		}
		if err := u.Start(); err != nil {
			return nil, err
		}
		for _, up := range active {
			if err := u.Update(up.Ref, up.New, up.Old); err != nil {
				_ = u.Abort()
				return nil, err
			}
		}
		if check == nil {
			return declined, u.Commit()
		}
		if err := u.Prepare(); err != nil {
			return nil, err
		}
		keep, err := check(active)
		if err == nil && len(keep) != len(active) {
			err = fmt.Errorf("check answered %d of %d updates", len(keep), len(active))
		}
		if err != nil {
			_ = u.Abort()
			return nil, &CheckError{Err: err}
		}
		refused := false
		for k, ok := range keep {
			if !ok {
				declined[index[k]] = true
				refused = true
			}
		}
		if !refused {
			return declined, u.Commit()
		}
		if err := u.Abort(); err != nil {
			return nil, err
		}
	}
}

// CreateChecked creates ref at id if it is absent and allow, asked while git
// holds the ref's lock, agrees: a create that must not race a delete decided
// elsewhere (restoring the ref of a pin whose record could be deleted at any
// moment). It answers created=false with a nil error when allow refused or
// the ref already points at id, and MismatchingStateError when it points
// elsewhere. It bypasses the group commit: it is rare, and its lock must be
// held only for its own check. ctx bounds the waits and is what allow
// should use; a transaction git has begun runs to its end.
func (r *Repo) CreateChecked(ctx context.Context, ref RefName, id ObjectID, allow func() (bool, error)) (created bool, err error) {
	if err := checkWritable(ref); err != nil {
		return false, err
	}
	check := func([]Update) ([]bool, error) {
		ok, err := allow()
		return []bool{ok}, err
	}
	retryRefused(func(round int, last bool) bool {
		declined, terr := r.transactChecked(ctx, []Update{{Ref: ref, New: id, Old: ZeroID}}, check)
		if terr == nil {
			created, err = !declined[0], nil
			return false
		}
		if refusalIsFinal(ctx, terr) {
			err = terr
			return false
		}
		if round == 0 && r.clearStaleLocks([]RefName{ref}, false) > 0 {
			return true
		}
		q := &createRequest{ref: ref, id: id}
		if !r.settleFromState(q) {
			err = r.explain(terr)
			return false
		}
		if q.locked == "" {
			err = q.err
			return false
		}
		if err = r.awaitLock(ctx, ref, q.locked, last); err != nil {
			return false
		}
		if last { // a stale lock removed at the last try: the caller retries
			err = &LockedError{Ref: ref, Path: q.locked}
			return false
		}
		return true
	})
	return created, err
}
