package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Update is one ref change in a transaction: set Ref to New if it is at Old
// now. ZeroID as Old means "must not exist", ZeroID as New means "delete".
type Update struct {
	Ref RefName
	New ObjectID
	Old ObjectID
}

// gitTimeout bounds one git transaction. It is not the caller's context: a
// transaction killed halfway would leave lock files behind, so once started it
// runs to the end (git holds locks only for milliseconds).
const gitTimeout = 60 * time.Second

// transact applies updates in one `git update-ref --stdin` transaction: all or
// nothing, each old value compared under git's lock. It returns a
// *CommandError when git refused; the caller then reads the refs to learn why.
//
// Legal use: validate every ref with checkWritable first; remove stale locks
// with clearStaleLocks; then transact.
func (r *Repo) transact(updates []Update) error {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.root.git(), r.updateRefArgs(r.root.lockTimeout())...)
	// SIGTERM, not SIGKILL: git removes its lock files on SIGTERM.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	cmd.Stdin = bytes.NewReader(transactionText(updates, "prepare\ncommit\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &CommandError{Args: []string{"update-ref", "--stdin"}, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return nil
}

// updateRefArgs runs `git update-ref --stdin` on the repository: a ref's
// lock file is waited for refLockTimeout, packed-refs' as long as the root
// says, and a full SHA is taken for what it is (by default git first looks
// for a ref of that name in six places, to warn that it would be ambiguous:
// two thirds of the system calls of a create).
func (r *Repo) updateRefArgs(refLockTimeout time.Duration) []string {
	return []string{
		"-c", "core.filesRefLockTimeout=" + strconv.FormatInt(refLockTimeout.Milliseconds(), 10),
		"-c", "core.packedRefsTimeout=" + strconv.FormatInt(r.root.lockTimeout().Milliseconds(), 10),
		"-c", "core.warnAmbiguousRefs=false",
		"--git-dir", r.dir, "update-ref", "--stdin",
	}
}

func checkWritable(ref RefName) error {
	if _, ok := ParsePipelineRef(ref); !ok {
		return &ForbiddenRefError{Ref: ref}
	}
	return nil
}

// minFreeBytes is the free space under which a failed write is put down to
// a full disk: a ref lock file needs one block.
const minFreeBytes = 64 << 10

// explain attributes a git failure no ref state explains: a full disk (git
// only says it "couldn't write" the lock file) or, failing that, git itself.
func (r *Repo) explain(err error) error {
	var fs syscall.Statfs_t
	if syscall.Statfs(r.dir, &fs) == nil && fs.Bavail*uint64(fs.Bsize) < minFreeBytes {
		return &DiskFullError{Dir: r.dir, Err: err}
	}
	return err
}

// DeleteOutcome says what happened to one ref of a delete.
type DeleteOutcome int

const (
	// Deleted: the ref was at the expected object and is gone now.
	Deleted DeleteOutcome = iota + 1
	// AlreadyGone: the ref did not exist; a retried delete counts this as done.
	AlreadyGone
	// Moved: the ref points at another object than expected; it was kept.
	Moved
	// Failed: the ref could not be deleted now (a held lock, a git failure);
	// Err says why and the ref is unchanged.
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

// maxBatchRounds bounds how often DeleteBatch retries the refs still to
// delete after taking out the ones that moved, vanished or are locked.
const maxBatchRounds = 3

// Check is asked, while git holds the lock of every ref of a transaction
// (after prepare, before commit), which updates may go ahead: keep[i] false
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

// transactChecked applies updates in one transaction, leaving out those check
// refuses (declined[i]); with a nil check it is transact. After a refusal
// git aborts and prepares the rest again, so what is committed was checked
// under its own locks.
func (r *Repo) transactChecked(updates []Update, check Check) (declined []bool, err error) {
	defer func(start time.Time) { r.root.observe(updates, start, err) }(time.Now())
	declined = make([]bool, len(updates))
	if check == nil {
		return declined, r.transact(updates)
	}
	w, err := r.startWriter(r.root.lockTimeout())
	if err != nil {
		return nil, err
	}
	defer w.close()
	for {
		var active []Update
		var index []int
		for i, u := range updates {
			if !declined[i] {
				active = append(active, u)
				index = append(index, i)
			}
		}
		if len(active) == 0 {
			return declined, nil
		}
		if err := w.prepare(active); err != nil {
			return nil, err
		}
		keep, err := check(active)
		if err == nil && len(keep) != len(active) {
			err = fmt.Errorf("check answered %d of %d updates", len(keep), len(active))
		}
		if err != nil {
			_ = w.abort()
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
			return declined, w.commit()
		}
		if err := w.abort(); err != nil {
			return nil, err
		}
	}
}

// DeleteBatch deletes every ref that still points at its expected object, in
// as few transactions as possible: one packed-refs rewrite per transaction
// instead of one per ref. Refs that moved are kept, refs already gone count
// as done. It returns one result per input, in input order; it fails as a
// whole only for a ref outside refs/pipelines/.
func (r *Repo) DeleteBatch(refs []RefState) ([]DeleteResult, error) {
	return r.DeleteBatchChecked(refs, nil)
}

// DeleteBatchChecked is DeleteBatch with a check asked under the refs' locks
// right before the delete; refs it refuses are Declined and kept.
func (r *Repo) DeleteBatchChecked(refs []RefState, check Check) ([]DeleteResult, error) {
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
	for round := 0; len(pending) > 0; round++ {
		updates := make([]Update, len(pending))
		for k, i := range pending {
			updates[k] = Update{Ref: refs[i].Ref, New: ZeroID, Old: refs[i].ID}
		}
		declined, terr := r.transactChecked(updates, check)
		if terr == nil {
			for k, i := range pending {
				results[i].Outcome = Deleted
				if declined[k] {
					results[i].Outcome = Declined
				}
			}
			return results, nil
		}
		var cerr *CheckError
		if errors.As(terr, &cerr) {
			for _, i := range pending {
				results[i].Outcome, results[i].Err = Failed, terr
			}
			return results, nil
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
				results[i].Outcome, results[i].Err = Failed, &LockedError{Path: r.heldLock(refs[i].Ref, false)}
			default:
				retry = append(retry, i)
			}
		}
		if len(retry) == len(pending) || round+1 >= maxBatchRounds {
			// Nothing to take out, so retrying would fail the same way.
			err := r.explain(terr)
			if lock := r.heldLock("", true); lock != "" {
				err = &LockedError{Path: lock}
			}
			for _, i := range retry {
				results[i].Outcome, results[i].Err = Failed, err
			}
			return results, nil
		}
		pending = retry
	}
	return results, nil
}

// Delete removes ref if it points at expected: a compare-and-delete. A ref
// already gone is success (deleted=false); a moved ref is
// MismatchingStateError.
func (r *Repo) Delete(ref RefName, expected ObjectID) (deleted bool, err error) {
	results, err := r.DeleteBatch([]RefState{{Ref: ref, ID: expected}})
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
