package gitops

import (
	"context"
	"errors"
)

// DeleteOutcome says what happened to one ref of a delete.
type DeleteOutcome int

const (
	// Deleted: the ref was at the expected object and is gone now.
	Deleted DeleteOutcome = iota + 1
	// AlreadyGone: the ref did not exist; a retried delete counts this as done.
	AlreadyGone
	// Moved: the ref points at another object than expected; it was kept.
	Moved
	// Failed: the ref could not be deleted now (a held lock, a git failure,
	// the caller's context ended); Err says why and the ref is unchanged.
	Failed
	// Declined: the caller's check, asked while git held the ref's lock,
	// refused the delete; the ref is unchanged.
	Declined
)

func (o DeleteOutcome) String() string {
	switch o {
	case Deleted:
		return "deleted"
	case AlreadyGone:
		return "already gone"
	case Moved:
		return "moved"
	case Failed:
		return "failed"
	case Declined:
		return "declined"
	}
	return "unknown"
}

// DeleteResult is the outcome for one ref of DeleteBatch.
type DeleteResult struct {
	Ref     RefName
	Outcome DeleteOutcome
	Actual  ObjectID // for Moved: where the ref is now
	Err     error    // for Failed
}

// DeleteBatch deletes every ref that still points at its expected object, in
// as few transactions as possible: one packed-refs rewrite per transaction
// instead of one per ref. Refs that moved are kept, refs already gone count
// as done. It returns one result per input, in input order; it fails as a
// whole only for a ref outside refs/pipelines/. Once ctx has ended no new
// transaction begins (the refs left are Failed with ctx's error); the one
// git has begun runs to its end.
func (r *Repo) DeleteBatch(ctx context.Context, refs []RefState) ([]DeleteResult, error) {
	return r.DeleteBatchChecked(ctx, refs, nil)
}

// DeleteBatchChecked is DeleteBatch with a check asked under the refs' locks
// right before the delete; refs it refuses are Declined and kept.
func (r *Repo) DeleteBatchChecked(ctx context.Context, refs []RefState, check Check) ([]DeleteResult, error) {
	results := make([]DeleteResult, len(refs))
	names := make([]RefName, len(refs))
	for i, rs := range refs {
		if err := checkWritable(rs.Ref); err != nil {
			return nil, err
		}
		results[i] = DeleteResult{Ref: rs.Ref}
		names[i] = rs.Ref
	}
	r.clearStaleLocks(names, true)

	pending := make([]int, len(refs))
	for i := range refs {
		pending[i] = i
	}
	fail := func(idx []int, err error) {
		for _, i := range idx {
			results[i].Outcome, results[i].Err = Failed, err
		}
	}
	// A batch is tried again after the refs that made its transaction
	// fail (moved, vanished, locked) are taken out.
	retryRefused(func(round int, last bool) bool {
		if len(pending) == 0 {
			return false
		}
		updates := make([]Update, len(pending))
		for k, i := range pending {
			updates[k] = Update{Ref: refs[i].Ref, New: ZeroID, Old: refs[i].ID}
		}
		declined, terr := r.transactChecked(ctx, updates, check)
		if terr == nil {
			for k, i := range pending {
				results[i].Outcome = Deleted
				if declined[k] {
					results[i].Outcome = Declined
				}
			}
			return false
		}
		if refusalIsFinal(ctx, terr) {
			// Nothing changed, and trying again would not help now.
			fail(pending, terr)
			return false
		}
		// Sort out the refs that made the transaction fail; retry the rest.
		var retry []int
		for _, i := range pending {
			actual, err := r.ResolveRef(refs[i].Ref)
			var notFound *RefNotFoundError
			switch {
			case errors.As(err, &notFound):
				results[i].Outcome = AlreadyGone
			case err != nil:
				results[i].Outcome, results[i].Err = Failed, err
			case actual != refs[i].ID:
				results[i].Outcome, results[i].Actual = Moved, actual
			case r.heldLock(refs[i].Ref, false) != "":
				results[i].Outcome, results[i].Err = Failed, &LockedError{Ref: refs[i].Ref, Path: r.heldLock(refs[i].Ref, false)}
			default:
				retry = append(retry, i)
			}
		}
		if len(retry) == len(pending) || last {
			// Nothing to take out, so retrying would fail the same way.
			err := r.explain(terr)
			if lock := r.heldLock("", true); lock != "" {
				err = &LockedError{Path: lock}
			}
			fail(retry, err)
			return false
		}
		pending = retry
		return len(pending) > 0
	})
	return results, nil
}

// Delete removes ref if it points at expected: a compare-and-delete. A ref
// already gone is success (deleted=false); a moved ref is
// MismatchingStateError.
func (r *Repo) Delete(ctx context.Context, ref RefName, expected ObjectID) (deleted bool, err error) {
	results, err := r.DeleteBatch(ctx, []RefState{{Ref: ref, ID: expected}})
	if err != nil {
		return false, err
	}
	res := results[0]
	switch res.Outcome {
	case Deleted:
		return true, nil
	case AlreadyGone:
		return false, nil
	case Moved:
		return false, &MismatchingStateError{Ref: ref, Expected: expected, Actual: res.Actual}
	}
	return false, res.Err
}
