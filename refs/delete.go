package refs

import (
	"context"
	"errors"

	"github.com/refkeeper/refkeeper/gitops"
)

// deleteAttempts bounds how often Delete starts over because a pin was made
// while it was deleting a ref that had none, or another deleter took its
// claim over.
const deleteAttempts = 3

// Delete deletes a pipeline's ref now, whatever the state of its pin. A
// pipeline with neither pin nor ref is PinNotFoundError; one already deleted
// is done.
func (s *Service) Delete(ctx context.Context, p Project, id PipelineID) error {
	if err := s.delete(ctx, p, id); err != nil {
		return err
	}
	return s.replicated(ctx, p)
}

// delete is Delete but for the wait for replicas.
func (s *Service) delete(ctx context.Context, p Project, id PipelineID) error {
	repo, err := s.open(p)
	if err != nil {
		return err
	}
	for range deleteAttempts {
		token := NewToken()
		out, err := s.Store.Claim(ctx, p, id, s.now(), s.Policy.MaxAge, token, true)
		if err != nil {
			return Unavailable("claiming pin", err)
		}
		if out.Status == statusClaimed {
			settled, err := s.deleteNow(ctx, repo, p, out.Pin, token)
			if err != nil || settled {
				return err
			}
			continue
		}
		// No live pin: a ref may still exist without one (made by hand, or its
		// record lost with Redis). Delete it too: "now, whatever the state".
		sha, err := repo.ResolveRef(id.Ref())
		var nf *gitops.RefNotFoundError
		switch {
		case errors.As(err, &nf):
			if out.Status == statusNone {
				return &PinNotFoundError{Project: p, PipelineID: id}
			}
			return nil
		case err != nil:
			return Unavailable("reading ref", err)
		}
		// Record the deletion first, claimed, so that a pin made meanwhile
		// gets its ref back and a sweep listing refs now does not adopt it.
		tomb, err := s.Store.Tombstone(ctx, p, id, sha, s.now(), token)
		if err != nil {
			return Unavailable("recording deletion", err)
		}
		if tomb.Status == statusLive {
			continue // pinned in between: delete that pin instead
		}
		s.registerProject(ctx, p)
		tomb.Pin.SHA = sha
		settled, err := s.deleteNow(ctx, repo, p, tomb.Pin, token)
		if err != nil || settled {
			return err
		}
	}
	return &UnavailableError{Op: "deleting ref", Cause: errors.New("the pipeline was pinned again or claimed by another deleter during each attempt")}
}

// deleteNow deletes the ref of a pin Delete claimed with token. It answers
// settled when the DELETE may answer: the ref is gone, or a re-pin called
// the deletion off (the PUT came after the DELETE). When another deleter
// took the claim over (a sweep claiming the same pin as due), that deleter
// has not necessarily deleted the ref yet, so the DELETE is not settled and
// starts over: an answer to DELETE means the ref is gone.
func (s *Service) deleteNow(ctx context.Context, repo *gitops.Repo, p Project, pin Pin, token string) (settled bool, err error) {
	_, declined, err := s.deleteClaimed(ctx, repo, p, []Pin{pin}, token)
	if err != nil || len(declined) == 0 {
		return err == nil, err
	}
	now, ok, err := s.Store.Get(ctx, p, pin.PipelineID)
	if err != nil {
		return false, Unavailable("reading pin", err)
	}
	// A claim held now is another deleter's: a sweep's on a live pin, or a
	// later DELETE's tombstone on a deleted one.
	return !(ok && now.deletionClaimed), nil
}

// deleteClaimed deletes the refs of claimed pins in one batch and marks each
// pin deleted if its claim still stands. Whether it stands is asked while git
// holds the refs' locks, right before they go: a re-pin that called the
// deletion off before that keeps its ref untouched, and one after it waits
// for the lock, so its own create follows the delete and it answers only once
// its ref exists. Refs that could not be deleted now keep their claim and stay
// due, and the error says why. It answers how many refs it deleted and the
// pins whose claim was gone when asked (re-pinned, or taken over by another
// deleter, which finishes the job).
func (s *Service) deleteClaimed(ctx context.Context, repo *gitops.Repo, p Project, pins []Pin, token string) (deleted int, declined []Pin, err error) {
	states := make([]gitops.RefState, len(pins))
	for i, pin := range pins {
		states[i] = gitops.RefState{Ref: pin.Ref(), ID: pin.SHA}
	}
	stillClaimed := func(updates []gitops.Update) ([]bool, error) {
		ids := make([]PipelineID, len(updates))
		for i, u := range updates {
			n, _ := gitops.ParsePipelineRef(u.Ref)
			ids[i] = PipelineID(n)
		}
		return s.Store.ClaimsHeld(ctx, p, ids, token)
	}
	results, err := repo.DeleteBatchChecked(ctx, states, stillClaimed)
	if err != nil {
		return 0, nil, err
	}
	// Git has deleted what it deleted: the records follow whether or not
	// the caller waits.
	ctx, cancel := Settling(ctx)
	defer cancel()
	var done []Pin
	var firstErr error
	for i, res := range results {
		switch res.Outcome {
		case gitops.Deleted:
			deleted++
			done = append(done, pins[i])
		case gitops.AlreadyGone, gitops.Moved:
			// Moved: the ref is not this pin's any more (it was re-created at
			// another SHA outside the service); the pin is over, the ref is
			// left for the sweep to adopt.
			done = append(done, pins[i])
		case gitops.Declined:
			declined = append(declined, pins[i])
		case gitops.Failed:
			s.Metrics.writeFailed(res.Err)
			s.logger().Warn("could not delete ref; will retry", "project", p, "ref", res.Ref, "err", res.Err)
			if firstErr == nil {
				firstErr = Unavailable("deleting "+res.Ref.String(), res.Err)
			}
		}
	}
	s.Metrics.refsDeleted(deleted)
	if err := s.commitDeletes(ctx, repo, p, done, token); err != nil {
		return deleted, declined, err
	}
	return deleted, declined, firstErr
}

// commitDeletes marks pins deleted after their refs are gone, and gives the
// ref back to any pin re-pinned in between.
func (s *Service) commitDeletes(ctx context.Context, repo *gitops.Repo, p Project, pins []Pin, token string) error {
	ids := make([]PipelineID, len(pins))
	for i, pin := range pins {
		ids[i] = pin.PipelineID
	}
	outs, err := s.Store.CommitDeletes(ctx, p, ids, s.now(), token)
	if err != nil {
		return Unavailable("marking pins deleted", err)
	}
	// Every reclaimed ref is given back, also after one failed: their
	// records are already cleared of the claim, so nothing would come back
	// for the rest. A ref that could not be made now is restored by the
	// next reconcile (its pin is live and unclaimed), or by its client's
	// retried PUT.
	var firstErr error
	for i, out := range outs {
		if out.Status == statusReclaimed && repo != nil {
			if _, err := s.createRef(ctx, repo, pins[i].Ref(), out.Pin.SHA); err != nil {
				s.logger().Warn("could not give a re-pinned pin its ref back", "project", p, "ref", pins[i].Ref(), "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
		}
	}
	return firstErr
}
