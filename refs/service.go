package refs

import (
	"context"
	"errors"
	"log/slog"
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

// PinFetcher brings into a project what a pin names before the pin is made,
// and says on which host kind the project's merge request refs are. The
// mirrors implement it (package mirrors): for a mirror they fetch from
// upstream, for a local project they do nothing.
type PinFetcher interface {
	// HostKind is where the project's host keeps a merge request's refs; a
	// local project is HostGitLab.
	HostKind(p Project) (HostKind, error)
	// FetchForPin brings the SHA a pin names into the project when it
	// lacks it, or, for a pin by merge request alone, mergeRef (see
	// HostKind.PinMergeRef).
	FetchForPin(ctx context.Context, repo *gitops.Repo, req PinRequest, mergeRef gitops.RefName) error
	// FetchMergeInputs brings a computed merge's named inputs into the
	// project before they are resolved.
	FetchMergeInputs(ctx context.Context, repo *gitops.Repo, p Project, inputs []gitops.Revision) error
	// CloneForPin is asked when a pin names a mirror whose first clone
	// has not succeeded: a failed clone is tried again within the request
	// (at the mirror's retry pace: meanwhile its last failure is answered
	// without a try), nil once the mirror is in place; its failure is the
	// upstream's (rejected, unavailable), and a clone still running is an
	// *UnavailableError with ErrMirrorCloning.
	CloneForPin(ctx context.Context, p Project) error
}

// hostKind is where the project's merge request refs are: HostGitLab
// without mirrors.
func (s *Service) hostKind(p Project) (HostKind, error) {
	if s.Mirrors == nil {
		return HostGitLab, nil
	}
	return s.Mirrors.HostKind(p)
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
	// knownProjects remembers which projects this process registered in
	// Redis lately, so a pin does not pay a round trip for it every time.
	knownProjects Cache[Project, struct{}]

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
	if IsProjectNotFound(err) && s.Repos.IsStaged(p) {
		return nil, &UnavailableError{Op: "opening project", Cause: ErrMirrorCloning}
	}
	if err != nil {
		return nil, FromGit(p, "opening project", err)
	}
	return repo, nil
}

// RepoPath answers the path of a project's bare repository, for serving it
// over git's HTTP protocol.
func (s *Service) RepoPath(p Project) (string, error) {
	path, err := s.Repos.RepoPath(p)
	if err != nil {
		// Other than no such project: the repos root could not be read,
		// which is no answer about the project.
		return "", FromGit(p, "finding project", err)
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
	if errors.Is(err, ErrMirrorCloning) && s.Mirrors != nil {
		// A mirror whose first clone failed: the pin tries it again and
		// answers what that gives (a running clone stays 503).
		if err = s.Mirrors.CloneForPin(ctx, req.Project); err == nil {
			repo, err = s.open(req.Project)
		}
	}
	if err != nil {
		return Pin{}, false, err
	}
	var mergeRef gitops.RefName
	if req.Merge == nil && req.SHA == "" && req.MergeRequestIID != 0 {
		host, err := s.hostKind(req.Project)
		if err != nil {
			return Pin{}, false, err
		}
		if mergeRef, err = host.PinMergeRef(req.MergeRequestIID); err != nil {
			return Pin{}, false, err
		}
	}
	// A computed merge fetches its own inputs (computeMerge).
	if s.Mirrors != nil && req.Merge == nil && (req.SHA != "" || req.MergeRequestIID != 0) {
		if err := s.Mirrors.FetchForPin(ctx, repo, req, mergeRef); err != nil {
			return Pin{}, false, err
		}
	}
	// Checked before anything is read or recovered: bad input changes
	// nothing.
	switch {
	case req.Merge != nil && req.SHA != "":
		return Pin{}, false, &InvalidInputError{Field: "merge", Reason: "give sha or merge, not both"}
	case req.Merge == nil && req.SHA == "" && req.MergeRequestIID == 0:
		return Pin{}, false, &InvalidInputError{Field: "sha", Reason: "sha or merge_request_iid is required"}
	}
	current, known, err := s.Store.Get(ctx, req.Project, req.PipelineID)
	if err != nil {
		return Pin{}, false, Unavailable("reading pin", err)
	}
	if !known {
		// A ref without a record: its record is what the pin had, lost.
		if current, known, err = s.recoverPin(ctx, repo, req.Project, req.PipelineID); err != nil {
			return Pin{}, false, err
		}
	}
	live := known && current.State != StateDeleted
	sha := req.SHA
	var merge *Merge
	switch {
	case req.Merge != nil:
		if sha, merge, err = s.computeMerge(ctx, repo, req); err != nil {
			return Pin{}, false, err
		}
	case sha == "" && live && (current.MergeRequestIID == req.MergeRequestIID || current.Adopted && current.MergeRequestIID == 0):
		// Pinning the same pipeline by merge request again means the pin it
		// already has, wherever the merge ref has moved since; so does
		// pinning a pipeline whose record came back without its merge
		// request (recoverPin), which this pin then records.
		sha = current.SHA
	case sha == "":
		sha, err = repo.ResolveRef(mergeRef)
		var nf *gitops.RefNotFoundError
		if errors.As(err, &nf) {
			return Pin{}, false, &MergeRefNotFoundError{Ref: mergeRef}
		}
		if err != nil {
			return Pin{}, false, Unavailable("reading merge ref", err)
		}
	}
	if err := s.checkCommit(repo, req.Project, sha); err != nil {
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
	ctx, cancel := Settling(ctx)
	defer cancel()
	created, err = s.createRef(ctx, repo, ref, sha)
	if err != nil {
		return Pin{}, false, err
	}
	out, err := s.Store.PinMerge(ctx, req.Project, req.PipelineID, sha, req.MergeRequestIID, merge, s.now())
	if err != nil {
		// The ref stays: the sweep adopts it, or the client's retry records it.
		return Pin{}, false, Unavailable("recording pin", err)
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
	if repo.Gone() {
		// The project was removed while this pin ran: a mirror's DELETE
		// renames the repository away, then removes the records, so a
		// record written after that removal would outlive the mirror. Its
		// records go the way the DELETE's went.
		if err := s.Store.PurgeProject(ctx, req.Project); err != nil {
			return Pin{}, false, Unavailable("removing the record of a pin on a deleted project", err)
		}
		return Pin{}, false, &ProjectNotFoundError{Project: req.Project}
	}
	if out.Status == statusNew {
		s.registerProject(ctx, req.Project)
	}
	if err := s.replicated(ctx, req.Project); err != nil {
		return Pin{}, false, err
	}
	return out.Pin, created, nil
}

// settleTimeout bounds the record updates that follow a git commit.
const settleTimeout = 30 * time.Second

// Settling is the context of what follows a git commit: the record update
// runs to its end even if the caller has gone (a DELETE whose client hung
// up must not leave its pin pinned and claimed, with a fetch token that
// still works), within settleTimeout.
func Settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// projectRegisterEvery bounds how stale this process's belief that a project
// is registered may be (Redis may have lost the set).
const projectRegisterEvery = time.Minute

// registerProject adds the project to the set metrics and sweeps read, at
// most once a minute per process.
func (s *Service) registerProject(ctx context.Context, p Project) {
	_, err := s.knownProjects.Get(p, projectRegisterEvery, func(struct{}) (struct{}, error) { return struct{}{}, s.Store.AddProject(ctx, p) })
	if err != nil {
		s.logger().Warn("could not register project", "project", p, "err", err)
	}
}

// checkCommit checks that sha is a commit of the project, in the domain's
// terms.
func (s *Service) checkCommit(repo *gitops.Repo, p Project, sha ObjectID) error {
	return FromGit(p, "checking commit", repo.IsCommit(sha))
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
		return false, Unavailable("creating "+ref.String(), err)
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
		return Pin{}, Unavailable("reading pin", err)
	}
	if !ok {
		repo, err := s.open(p)
		if err != nil {
			return Pin{}, err
		}
		if pin, ok, err = s.recoverPin(ctx, repo, p, id); err != nil {
			return Pin{}, err
		}
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
		return Pin{}, Unavailable("finishing pin", err)
	}
	if !out.HasPin {
		if out, err = s.finishRecovered(ctx, p, id); err != nil {
			return Pin{}, err
		}
	}
	if !out.HasPin {
		return Pin{}, &PinNotFoundError{Project: p, PipelineID: id}
	}
	if out.Pin.State == StateFinished && !out.Due.IsZero() {
		s.schedule(ctx, p, out.Due)
	}
	if err := s.replicated(ctx, p); err != nil {
		return Pin{}, err
	}
	return out.Pin, nil
}

// finishRecovered finishes a pin whose record Redis lost, once recoverPin
// brought it back from its ref; without a ref, the answer has no pin.
func (s *Service) finishRecovered(ctx context.Context, p Project, id PipelineID) (outcome, error) {
	repo, err := s.open(p)
	if err != nil {
		return outcome{}, err
	}
	if _, ok, err := s.recoverPin(ctx, repo, p, id); err != nil || !ok {
		return outcome{}, err
	}
	out, err := s.Store.Finish(ctx, p, id, s.now(), s.Policy)
	if err != nil {
		return outcome{}, Unavailable("finishing pin", err)
	}
	return out, nil
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

// CloseMergeRequest says the merge request was merged or closed: its finished
// pins expire now, its pinned ones as soon as they finish.
func (s *Service) CloseMergeRequest(ctx context.Context, p Project, iid MergeRequestIID) ([]Pin, error) {
	if _, err := s.RepoPath(p); err != nil {
		return nil, err
	}
	now := s.now()
	ids, err := s.Store.CloseMergeRequest(ctx, p, iid, now)
	if err != nil {
		return nil, Unavailable("closing merge request", err)
	}
	pins, err := s.Store.getMany(ctx, p, ids)
	if err != nil {
		return nil, Unavailable("reading pins", err)
	}
	for _, pin := range pins {
		if pin.State == StateFinished {
			s.schedule(ctx, p, now) // one run deletes them all
			break
		}
	}
	if err := s.replicated(ctx, p); err != nil {
		return nil, err
	}
	return pins, nil
}

// List answers pins of a project newest first, in one state or (empty) in
// any, a page at a time; see Store.List for the cursor.
func (s *Service) List(ctx context.Context, p Project, st State, cursor string, limit int) ([]Pin, string, error) {
	if _, err := s.RepoPath(p); err != nil {
		return nil, "", err
	}
	if err := CheckPage(cursor, limit, validCursor); err != nil {
		return nil, "", err
	}
	states := []State{st}
	if st == "" {
		states = []State{StatePinned, StateFinished, StateDeleted}
	}
	pins, next, err := s.Store.List(ctx, p, states, cursor, limit)
	if err != nil {
		return nil, "", Unavailable("listing pins", err)
	}
	return pins, next, nil
}

// Ready checks that Redis answers and the repos root is readable.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.Store.Ping(ctx); err != nil {
		where := "redis"
		if s.Store.Addr != "" {
			where = "redis at " + s.Store.Addr
		}
		return &UnavailableError{Op: where + " does not answer", Cause: err}
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
		if cerr := s.checkCommit(repo, p, sha); cerr != nil {
			return nil, cerr
		}
		return nil, Unavailable("listing history", err)
	}
	return ids, nil
}
