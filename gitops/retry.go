package gitops

import (
	"context"
	"errors"
)

// maxRounds bounds the tries of one write of the same refs: transactions
// after git refused one (retryRefused), and a create's waits for a lock
// another writer holds (awaitLock). A try after the first follows a step
// that explains the refusal and takes its cause out (refs already settled
// answered, stale lock files removed, a held lock waited for), so a third
// refusal means the cause is not going away: the caller gets the typed,
// transient error (*LockedError, *CommandError) and retries later, as a
// task does.
//
// There is no backoff of its own between rounds: each one waits in git
// (core.filesRefLockTimeout, core.packedRefsTimeout) or for the lock
// (waitUnlocked), which paces them.
const maxRounds = 3

// retryRefused runs round(n, last) for n = 0, 1, ... while it answers
// again, at most maxRounds times. A round runs one transaction; when git
// refused it, the round sorts out what the refusal says and answers again
// when the rest is worth another transaction. When last is true no round
// follows: the round gives up with its answer instead of asking again. A
// refusal that no further round can help ends the rounds at once
// (refusalIsFinal).
func retryRefused(round func(n int, last bool) (again bool)) {
	for n := 0; n < maxRounds; n++ {
		if !round(n, n == maxRounds-1) {
			return
		}
	}
}

// refusalIsFinal reports whether a failed transaction must not be tried
// again within the call: git ran past its timeout (another round would
// hang as long again), a Check failed (nothing changed; the check's cause
// is the caller's), or the caller's ctx ended.
func refusalIsFinal(ctx context.Context, err error) bool {
	var cerr *CheckError
	var timeout *TimeoutError
	return errors.As(err, &cerr) || errors.As(err, &timeout) || ctx.Err() != nil
}
