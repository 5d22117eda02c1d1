package refs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// ExpiryScheduler runs a project's due deletions (Service.ExpireDue) at a
// given time: every pin of the project due by then goes in the same batch.
// The task queue implements it (package jobs); the domain only says when. A
// failure to schedule is logged, not fatal: the GC sweep deletes whatever is
// due anyway.
type ExpiryScheduler interface {
	ScheduleExpiry(ctx context.Context, p Project, at time.Time) error
}

// Service is the pin lifecycle: pin, finish, delete, close a merge request,
// expire. It is safe for concurrent use by any number of goroutines and
// processes sharing the repos root and Redis.
type Service struct {
	Repos  *gitops.Root
	Store  *Store
	Policy Policy
	// Clock tells the time every record is stamped with and compared with;
	// nil: SystemClock. Replicas share one clock: RedisClock.
	Clock Clock
	// Scheduler runs deletions at their due time; nil: only sweeps delete.
	Scheduler ExpiryScheduler
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Mirrors fetches what a pin on a mirror names first; nil: nothing is
	// fetched, and merge refs are GitLab's.
	Mirrors PinFetcher
	// Metrics counts ref writes; nil: not counted.
	Metrics *Metrics
	// knownProjects remembers when this process last registered a project
	// in Redis, so a pin does not pay a round trip for it every time.
	knownProjects sync.Map // Project -> time.Time

	// ReconcileInterval is how often a periodic sweep also lists a
	// project's refs on disk, to adopt unknown ones and restore vanished
	// ones: the part of a sweep whose cost follows the number of refs rather
	// than the number of due pins. Zero: every sweep. SweepAll always does.
	ReconcileInterval time.Duration

	// MergeIdentity is author and committer of computed merges; zero:
	// gitops.DefaultIdentity.
	MergeIdentity gitops.Identity
}

func (s *Service) now() time.Time {
	if s.Clock != nil {
		return s.Clock.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// open returns the project's repository, with gitops' errors turned into the
// domain's.
func (s *Service) open(p Project) (*gitops.Repo, error) {
	repo, err := s.Repos.Open(p)
	var nf *gitops.ProjectNotFoundError
	if errors.As(err, &nf) && s.Repos.IsStaged(p) {
		return nil, &UnavailableError{Op: "opening project", Cause: errMirrorCloning}
	}
	if errors.As(err, &nf) {
		return nil, &ProjectNotFoundError{Project: p}
	}
	if err != nil {
		return nil, unavailable("opening project", err)
	}
	return repo, nil
}

// RepoPath answers the path of a project's bare repository, for serving it
// over git's HTTP protocol.
func (s *Service) RepoPath(p Project) (string, error) {
	path, err := s.Repos.RepoPath(p)
	var nf *gitops.ProjectNotFoundError
	var invalid *gitops.InvalidNameError
	switch {
	case errors.As(err, &nf), errors.As(err, &invalid):
		return "", &ProjectNotFoundError{Project: p}
	case err != nil:
		// The repos root could not be read: not an answer about the project.
		return "", unavailable("finding project", err)
	}
	return path, nil
}

// PinRequest asks for a pipeline's ref. Without SHA, the SHA is what the merge
// request's merge ref points at now.
type PinRequest struct {
	Project         Project
	PipelineID      PipelineID
	SHA             ObjectID        // "": pin by merge request
	MergeRequestIID MergeRequestIID // 0: none
	// Merge, instead of SHA, pins a merge the service computes.
	Merge *MergeInput
}

// Pin creates the pipeline ref at the requested SHA and records the pin.
// created is true when the ref was created by this call (also for a pin whose
// ref had been deleted: a retried pipeline). Pinning a finished pin again
// re-opens it and calls off its deletion. A ref or pin at another SHA is a
// RefConflictError, and nothing changes.
func (s *Service) Pin(ctx context.Context, req PinRequest) (pin Pin, created bool, err error) {
	repo, err := s.open(req.Project)
	if err != nil {
		return Pin{}, false, err
	}
	mergeRef := gitops.MergeRequestRef(int64(req.MergeRequestIID))
	// A computed merge fetches its own inputs (computeMerge).
	if s.Mirrors != nil && req.Merge == nil && (req.SHA != "" || req.MergeRequestIID != 0) {
		if mergeRef, err = s.Mirrors.FetchForPin(ctx, repo, req); err != nil {
			return Pin{}, false, err
		}
	}
	current, known, err := s.Store.Get(ctx, req.Project, req.PipelineID)
	if err != nil {
		return Pin{}, false, unavailable("reading pin", err)
	}
	live := known && current.State != StateDeleted
	sha := req.SHA
	var merge *Merge
	switch {
	case req.Merge != nil && sha != "":
		return Pin{}, false, &InvalidInputError{Field: "merge", Reason: "give sha or merge, not both"}
	case req.Merge != nil:
		if sha, merge, err = s.computeMerge(ctx, repo, req); err != nil {
			return Pin{}, false, err
		}
	case sha == "" && req.MergeRequestIID == 0:
		return Pin{}, false, &InvalidInputError{Field: "sha", Reason: "sha or merge_request_iid is required"}
	case sha == "" && live && current.MergeRequestIID == req.MergeRequestIID:
		// Pinning the same pipeline by merge request again means the pin it
		// already has, wherever the merge ref has moved since.
		sha = current.SHA
	case sha == "":
		sha, err = repo.ResolveRef(mergeRef)
		var nf *gitops.RefNotFoundError
		if errors.As(err, &nf) {
			return Pin{}, false, &MergeRefNotFoundError{Ref: mergeRef}
		}
		if err != nil {
			return Pin{}, false, unavailable("reading merge ref", err)
		}
	}
	if err := s.checkCommit(repo, sha); err != nil {
		return Pin{}, false, err
	}
	ref := req.PipelineID.Ref()
	// The record is the truth of a live pin, also when its ref vanished (the
	// sweep restores it): another SHA is a conflict before git is touched.
	if live && current.SHA != sha {
		return Pin{}, false, &RefConflictError{Ref: ref, Pinned: current.SHA, Requested: sha}
	}
	// From here the pin runs to its end whether or not the caller waits:
	// once git may have the ref, its record must follow (a caller that
	// stopped waiting for the create could not tell whether it happened).
	ctx, cancel := settling(ctx)
	defer cancel()
	created, err = s.createRef(ctx, repo, ref, sha)
	if err != nil {
		return Pin{}, false, err
	}
	out, err := s.Store.PinMerge(ctx, req.Project, req.PipelineID, sha, req.MergeRequestIID, merge, s.now())
	if err != nil {
		// The ref stays: the sweep adopts it, or the client's retry records it.
		return Pin{}, false, unavailable("recording pin", err)
	}
	switch {
	case out.Status == statusConflict:
		// Another client pinned this pipeline at another SHA in between, after
		// the ref was gone. Take back the ref this call created, if any.
		if created {
			if _, err := repo.Delete(ctx, ref, sha); err != nil {
				s.logger().Warn("could not take back conflicting ref", "project", req.Project, "ref", ref, "err", err)
			}
		}
		return Pin{}, false, &RefConflictError{Ref: ref, Pinned: out.Pin.SHA, Requested: sha}
	case out.Recreate:
		// A deletion was pending or done: it may have removed the ref after
		// this call saw it. The deleter re-creates it when it notices the
		// re-pin, but the caller must get a ref now.
		again, err := s.createRef(ctx, repo, ref, sha)
		if err != nil {
			return Pin{}, false, err
		}
		created = created || again
	}
	if out.Status == statusNew {
		s.registerProject(ctx, req.Project)
	}
	return out.Pin, created, nil
}

// settleTimeout bounds the record updates that follow a git commit.
const settleTimeout = 30 * time.Second

// settling is the context of what follows a git commit: the record update
// runs to its end even if the caller has gone (a DELETE whose client hung
// up must not leave its pin pinned and claimed, with a fetch token that
// still works), within settleTimeout.
func settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// projectRegisterEvery bounds how stale this process's belief that a project
// is registered may be (Redis may have lost the set).
const projectRegisterEvery = time.Minute

// registerProject adds the project to the set metrics and sweeps read, at
// most once a minute per process.
func (s *Service) registerProject(ctx context.Context, p Project) {
	if last, ok := s.knownProjects.Load(p); ok && time.Since(last.(time.Time)) < projectRegisterEvery {
		return
	}
	if err := s.Store.AddProject(ctx, p); err != nil {
		s.logger().Warn("could not register project", "project", p, "err", err)
		return
	}
	s.knownProjects.Store(p, time.Now())
}

// checkCommit turns gitops' object errors into the domain's.
func (s *Service) checkCommit(repo *gitops.Repo, sha ObjectID) error {
	err := repo.IsCommit(sha)
	var nf *gitops.ObjectNotFoundError
	var nc *gitops.NotCommitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		return &CommitNotFoundError{SHA: sha, Reason: "no such object"}
	case errors.As(err, &nc):
		return &CommitNotFoundError{SHA: sha, Reason: "it is a " + nc.Type}
	}
	return unavailable("checking commit", err)
}

// createRef creates ref at sha if absent; created is false when it is there
// already at sha.
func (s *Service) createRef(ctx context.Context, repo *gitops.Repo, ref gitops.RefName, sha ObjectID) (bool, error) {
	created, err := repo.Create(ctx, ref, sha)
	var mismatch *gitops.MismatchingStateError
	if errors.As(err, &mismatch) {
		return false, &RefConflictError{Ref: ref, Pinned: mismatch.Actual, Requested: sha}
	}
	if err != nil {
		s.Metrics.writeFailed(err)
		return false, unavailable("creating "+ref.String(), err)
	}
	if created {
		s.Metrics.refsCreated(1)
	}
	return created, nil
}

// Get reads a pin.
func (s *Service) Get(ctx context.Context, p Project, id PipelineID) (Pin, error) {
	if _, err := s.RepoPath(p); err != nil {
		return Pin{}, err
	}
	pin, ok, err := s.Store.Get(ctx, p, id)
	if err != nil {
		return Pin{}, unavailable("reading pin", err)
	}
	if !ok {
		return Pin{}, &PinNotFoundError{Project: p, PipelineID: id}
	}
	return pin, nil
}

// Finish releases a pin: finished now, its ref kept until now + retention
// (or deleted at once if its merge request was closed). Finishing twice keeps
// the first finished_at.
func (s *Service) Finish(ctx context.Context, p Project, id PipelineID) (Pin, error) {
	if _, err := s.RepoPath(p); err != nil {
		return Pin{}, err
	}
	out, err := s.Store.Finish(ctx, p, id, s.now(), s.Policy)
	if err != nil {
		return Pin{}, unavailable("finishing pin", err)
	}
	if !out.HasPin {
		return Pin{}, &PinNotFoundError{Project: p, PipelineID: id}
	}
	if out.Pin.State == StateFinished && !out.Due.IsZero() {
		s.schedule(ctx, p, out.Due)
	}
	return out.Pin, nil
}

// schedule asks for the project's due deletions to run at `at`.
func (s *Service) schedule(ctx context.Context, p Project, at time.Time) {
	if s.Scheduler == nil {
		return
	}
	if err := s.Scheduler.ScheduleExpiry(ctx, p, at); err != nil {
		s.logger().Warn("could not schedule deletion; the GC sweep will do it", "project", p, "at", at, "err", err)
	}
}

// deleteAttempts bounds how often Delete starts over because a pin was made
// while it was deleting a ref that had none, or another deleter took its
// claim over.
const deleteAttempts = 3

// Delete deletes a pipeline's ref now, whatever the state of its pin. A
// pipeline with neither pin nor ref is PinNotFoundError; one already deleted
// is done.
func (s *Service) Delete(ctx context.Context, p Project, id PipelineID) error {
	repo, err := s.open(p)
	if err != nil {
		return err
	}
	for range deleteAttempts {
		token := newToken()
		out, err := s.Store.Claim(ctx, p, id, s.now(), s.Policy.MaxAge, token, true)
		if err != nil {
			return unavailable("claiming pin", err)
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
			return unavailable("reading ref", err)
		}
		// Record the deletion first, claimed, so that a pin made meanwhile
		// gets its ref back and a sweep listing refs now does not adopt it.
		tomb, err := s.Store.Tombstone(ctx, p, id, sha, s.now(), token)
		if err != nil {
			return unavailable("recording deletion", err)
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
		return false, unavailable("reading pin", err)
	}
	// A claim held now is another deleter's: a sweep's on a live pin, or a
	// later DELETE's tombstone on a deleted one.
	return !(ok && now.deletionClaimed), nil
}

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
		return out, unavailable("reading next due time", err)
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
	token := newToken()
	outs, err := s.Store.ClaimDue(ctx, p, ids, now, s.Policy.MaxAge, token)
	if err != nil {
		return 0, 0, unavailable("claiming pins", err)
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
		return 0, 0, unavailable("purging pins", err)
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
	ctx, cancel := settling(ctx)
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
				firstErr = unavailable("deleting "+res.Ref.String(), res.Err)
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
		return unavailable("marking pins deleted", err)
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

// CloseMergeRequest says the merge request was merged or closed: its finished
// pins expire now, its pinned ones as soon as they finish.
func (s *Service) CloseMergeRequest(ctx context.Context, p Project, iid MergeRequestIID) ([]Pin, error) {
	if _, err := s.RepoPath(p); err != nil {
		return nil, err
	}
	now := s.now()
	ids, err := s.Store.CloseMergeRequest(ctx, p, iid, now)
	if err != nil {
		return nil, unavailable("closing merge request", err)
	}
	pins, err := s.Store.getMany(ctx, p, ids)
	if err != nil {
		return nil, unavailable("reading pins", err)
	}
	for _, pin := range pins {
		if pin.State == StateFinished {
			s.schedule(ctx, p, now) // one run deletes them all
			break
		}
	}
	return pins, nil
}

// MaxListLimit bounds one page of List.
const MaxListLimit = 1000

// List answers pins of a project newest first, in one state or (empty) in
// any, a page at a time; see Store.List for the cursor.
func (s *Service) List(ctx context.Context, p Project, st State, cursor string, limit int) ([]Pin, string, error) {
	if _, err := s.RepoPath(p); err != nil {
		return nil, "", err
	}
	if cursor != "" && !validCursor(cursor) {
		return nil, "", &InvalidInputError{Field: "cursor", Reason: "not a cursor this service handed out"}
	}
	if limit < 1 || limit > MaxListLimit {
		return nil, "", &InvalidInputError{Field: "limit", Reason: "must be 1 to 1000"}
	}
	states := []State{st}
	if st == "" {
		states = []State{StatePinned, StateFinished, StateDeleted}
	}
	pins, next, err := s.Store.List(ctx, p, states, cursor, limit)
	if err != nil {
		return nil, "", unavailable("listing pins", err)
	}
	return pins, next, nil
}

// Ready checks that Redis answers and the repos root is readable.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.Store.Ping(ctx); err != nil {
		return unavailable("redis", err)
	}
	if err := s.Repos.Check(); err != nil {
		return &UnavailableError{Op: "reading repos root", Cause: err}
	}
	return nil
}

// Ancestors lists the commits sha reaches in the project, sha first, at most
// limit: what the git mount checks a scoped fetch's haves against.
func (s *Service) Ancestors(ctx context.Context, p Project, sha ObjectID, limit int) ([]ObjectID, error) {
	repo, err := s.open(p)
	if err != nil {
		return nil, err
	}
	ids, err := repo.Ancestors(ctx, sha, limit)
	if err != nil {
		if cerr := s.checkCommit(repo, sha); cerr != nil {
			return nil, cerr
		}
		return nil, unavailable("listing history", err)
	}
	return ids, nil
}
