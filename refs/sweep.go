package refs

import (
	"context"
	"errors"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// SweepResult is what one GC sweep did.
type SweepResult struct {
	// Deleted counts refs deleted because their pin was due.
	Deleted int `json:"deleted"`
	// Adopted counts pipeline refs found without a pin, now tracked for max-age.
	Adopted int `json:"adopted"`
	// Kept counts the live pins (pinned or finished) left after the sweep.
	Kept int `json:"kept"`
	// Restored counts refs of live pins that had vanished and were re-created.
	Restored int `json:"restored"`
	// Purged counts records of pins deleted more than max-age ago, dropped.
	Purged int `json:"purged"`
	// FailedProjects counts projects the sweep could not finish (a held lock,
	// a failing git); the next sweep comes back to them.
	FailedProjects int           `json:"failed_projects"`
	Duration       time.Duration `json:"-"`
}

// sweepBatch is how many due pins are claimed and deleted together: one
// git transaction and one packed-refs rewrite per batch, so bigger is
// cheaper (10k expired refs in 100k: one rewrite, like a single transaction
// of them all), while a batch's records are held in memory at once (about
// 1 KB each). Only deletes take packed-refs.lock (pins write loose refs), so
// a long batch holds up no pin but the re-pins of its own expired refs,
// which wait for it (each in its own request: the shared writer of creates
// does not wait on a lock).
const sweepBatch = 10000

// adoptChunk is how many refs found on disk are compared with their records
// at a time. Adoption lists every ref of a repository at once (100k refs: the
// largest allocation of the process), so its chunks stay smaller than a
// delete batch to keep the peak memory down.
const adoptChunk = 5000

// maxDueRounds bounds the batches of one project in one sweep, so a pin that
// keeps failing cannot hold the sweep; the next sweep carries on.
const maxDueRounds = 1000

// Sweep is the periodic GC pass: SweepAll, except that a project's refs on
// disk are listed (adoption, restoring) only once per ReconcileInterval, so
// a sweep between costs what is due, not what exists.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	return s.sweep(ctx, false)
}

// SweepAll runs one GC pass over every project on disk and every project
// with records: delete the refs of due pins in batches, purge old records,
// adopt pipeline refs without a pin, and re-create the refs of live pins
// that vanished. A project that fails (a held lock, Redis blinking) is
// logged and skipped; the error is returned only when nothing could be swept
// at all.
func (s *Service) SweepAll(ctx context.Context) (SweepResult, error) {
	return s.sweep(ctx, true)
}

func (s *Service) sweep(ctx context.Context, reconcileAll bool) (SweepResult, error) {
	start := time.Now()
	var res SweepResult
	inc, lost, err := s.dataLost(ctx)
	if err != nil {
		return res, err
	}
	if lost {
		// The reconcile markers may have survived what was lost.
		reconcileAll = true
	}
	projects, err := s.sweepProjects(ctx)
	if err != nil {
		return res, err
	}
	for _, p := range projects {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.sweepProject(ctx, p, reconcileAll, &res); err != nil {
			res.FailedProjects++
			s.logger().Warn("sweep skipped a project; next sweep retries", "project", p, "err", err)
		}
	}
	if lost && res.FailedProjects == 0 {
		// Until every project is reconciled, every sweep reconciles all.
		if err := s.Store.MarkIncarnation(ctx, inc); err != nil {
			s.logger().Warn("could not record the reconcile after Redis lost data; the next sweep reconciles again", "err", err)
		}
	}
	res.Duration = time.Since(start)
	s.Metrics.sweepDone(res.Duration, res.FailedProjects)
	return res, nil
}

// dataLost tells whether Redis may have lost data since every project was
// last reconciled: its server ids changed (a restart, a failover) or the key
// holding them is gone (the data flushed). inc names the data set now.
func (s *Service) dataLost(ctx context.Context) (inc string, lost bool, err error) {
	inc, err = s.Store.Incarnation(ctx)
	if err != nil {
		return "", false, Unavailable("reading Redis's server ids", err)
	}
	last, ok, err := s.Store.LastIncarnation(ctx)
	if err != nil {
		return "", false, Unavailable("reading Redis's server ids", err)
	}
	if ok && last == inc {
		return inc, false, nil
	}
	if ok {
		s.logger().Warn("Redis restarted or failed over and may have lost pins: reconciling every project with its refs on disk",
			"was", last, "now", inc)
	} else {
		s.logger().Info("no reconcile recorded in this Redis (new, or its data was lost): reconciling every project with its refs on disk")
	}
	return inc, true, nil
}

// sweepProjects is the union of the projects on disk and those with records
// (a removed repository still has records to settle).
func (s *Service) sweepProjects(ctx context.Context) ([]Project, error) {
	onDisk, err := s.Repos.Projects(ctx)
	if err != nil {
		return nil, &UnavailableError{Op: "listing projects", Cause: err}
	}
	recorded, err := s.Store.Projects(ctx)
	if err != nil {
		return nil, Unavailable("listing projects", err)
	}
	seen := make(map[Project]bool, len(onDisk))
	for _, p := range onDisk {
		seen[p] = true
	}
	for _, p := range recorded {
		if !seen[p] {
			onDisk = append(onDisk, p)
			seen[p] = true
		}
	}
	return onDisk, nil
}

func (s *Service) sweepProject(ctx context.Context, p Project, reconcileAll bool, res *SweepResult) error {
	if err := s.expireProject(ctx, p, res); err != nil {
		return err
	}
	repo, err := s.open(p)
	var nf *ProjectNotFoundError
	if errors.As(err, &nf) {
		return s.dropIfGone(ctx, p)
	}
	if err != nil {
		return err
	}
	if err := s.reconcileIfDue(ctx, repo, p, reconcileAll, res); err != nil {
		return err
	}
	counts, err := s.Store.Count(ctx, p)
	if err != nil {
		return Unavailable("counting pins", err)
	}
	res.Kept += int(counts[StatePinned] + counts[StateFinished])
	return nil
}

// reconcileIfDue reconciles when asked to, or when the project's last
// reconcile is older than the interval (or Redis lost the marker).
func (s *Service) reconcileIfDue(ctx context.Context, repo *gitops.Repo, p Project, always bool, res *SweepResult) error {
	if !always && s.ReconcileInterval > 0 {
		recent, err := s.Store.RecentlyReconciled(ctx, p)
		if err != nil {
			return Unavailable("reading reconcile marker", err)
		}
		if recent {
			return nil
		}
	}
	start := s.now()
	if err := s.reconcile(ctx, repo, p, res); err != nil {
		return err
	}
	if s.ReconcileInterval > 0 {
		if err := s.Store.MarkReconciled(ctx, p, start, s.ReconcileInterval); err != nil {
			return Unavailable("writing reconcile marker", err)
		}
	}
	return nil
}

// dropIfGone forgets a project whose repository is gone once no live pin is
// left (its deleted records are unreadable without it), so that the set of
// projects that sweeps and metrics read shrinks with the projects.
func (s *Service) dropIfGone(ctx context.Context, p Project) error {
	dropped, err := s.Store.DropProject(ctx, p)
	if err != nil {
		return Unavailable("dropping project", err)
	}
	if dropped {
		s.knownProjects.Forget(p)
		s.logger().Info("dropped the records of a project whose repository is gone", "project", p)
	}
	return nil
}

// reconcile compares the refs on disk with the records: refs without a live
// record are adopted, live records without a ref get it back.
func (s *Service) reconcile(ctx context.Context, repo *gitops.Repo, p Project, res *SweepResult) error {
	listedAt := s.now()
	refs, err := repo.PipelineRefs()
	if err != nil {
		return Unavailable("listing pipeline refs", err)
	}
	onDisk := make(map[PipelineID]bool, len(refs))
	ids := make([]PipelineID, 0, len(refs))
	shas := make(map[PipelineID]ObjectID, len(refs))
	for _, rs := range refs {
		n, _ := gitops.ParsePipelineRef(rs.Ref)
		id := PipelineID(n)
		onDisk[id] = true
		ids = append(ids, id)
		shas[id] = rs.ID
	}
	adopted, err := s.adoptUnknown(ctx, p, ids, shas, listedAt)
	res.Adopted += adopted
	if err != nil {
		return err
	}
	restored, err := s.restoreVanished(ctx, repo, p, onDisk, listedAt)
	res.Restored += restored
	return err
}

func (s *Service) adoptUnknown(ctx context.Context, p Project, ids []PipelineID, shas map[PipelineID]ObjectID, listedAt time.Time) (int, error) {
	adopted := 0
	for start := 0; start < len(ids); start += adoptChunk {
		chunk := ids[start:min(start+adoptChunk, len(ids))]
		pins, err := s.Store.getMany(ctx, p, chunk)
		if err != nil {
			return adopted, Unavailable("reading pins", err)
		}
		live := make(map[PipelineID]bool, len(pins))
		for _, pin := range pins {
			live[pin.PipelineID] = pin.State != StateDeleted
		}
		unknown := make(map[PipelineID]ObjectID)
		for _, id := range chunk {
			if !live[id] {
				unknown[id] = shas[id]
			}
		}
		n, err := s.Store.AdoptMany(ctx, p, unknown, s.now(), listedAt)
		adopted += n
		if err != nil {
			return adopted, Unavailable("adopting refs", err)
		}
	}
	if adopted > 0 {
		s.Metrics.refsAdopted(adopted)
		if err := s.Store.AddProject(ctx, p); err != nil {
			return adopted, Unavailable("registering project", err)
		}
		s.logger().Info("adopted pipeline refs without a pin", "project", p, "count", adopted,
			"deleted_after", s.Policy.MaxAge.String())
	}
	return adopted, nil
}

// restoreVanished re-creates the ref of every live pin whose ref is missing
// (deleted by hand, lost with a restored backup), if its commit still exists.
// Pins with a deletion claim, or created after the listing began, are left
// alone: their ref is being deleted or was just made.
func (s *Service) restoreVanished(ctx context.Context, repo *gitops.Repo, p Project, onDisk map[PipelineID]bool, listedAt time.Time) (int, error) {
	liveIDs, err := s.Store.LiveIDs(ctx, p)
	if err != nil {
		return 0, Unavailable("listing live pins", err)
	}
	var missing []PipelineID
	for _, id := range liveIDs {
		if !onDisk[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	pins, err := s.Store.getMany(ctx, p, missing)
	if err != nil {
		return 0, Unavailable("reading pins", err)
	}
	restored := 0
	for _, pin := range pins {
		if pin.State == StateDeleted || pin.deletionClaimed || !pin.CreatedAt.Before(listedAt) {
			continue
		}
		if err := s.ensureCommit(ctx, repo, pin); err != nil {
			s.logger().Warn("cannot restore ref of live pin: its commit is gone", "project", p, "ref", pin.Ref(), "sha", pin.SHA, "err", err)
			continue
		}
		created, err := s.restoreRef(ctx, repo, p, pin, listedAt)
		if err != nil {
			return restored, err
		}
		if created {
			restored++
			s.logger().Warn("re-created vanished ref of a live pin", "project", p, "ref", pin.Ref(), "sha", pin.SHA)
		}
	}
	s.Metrics.refsRestored(restored)
	return restored, nil
}

// restoreRef re-creates the ref of a live pin, if the pin is still live and
// unclaimed while git holds the ref's lock: a deletion that began since the
// pin was read must not be undone by a ref re-created behind it.
func (s *Service) restoreRef(ctx context.Context, repo *gitops.Repo, p Project, pin Pin, listedAt time.Time) (bool, error) {
	created, err := repo.CreateChecked(ctx, pin.Ref(), pin.SHA, func() (bool, error) {
		return s.Store.RestoreAllowed(ctx, p, pin.PipelineID, pin.SHA, listedAt)
	})
	var mismatch *gitops.MismatchingStateError
	switch {
	case errors.As(err, &mismatch):
		// Made again by hand at another commit since the listing: the
		// record keeps its SHA (a PUT at that one is a conflict), the ref
		// is left alone.
		s.logger().Warn("ref of a live pin is at another commit; left alone", "project", p, "ref", pin.Ref(),
			"pinned", pin.SHA, "actual", mismatch.Actual)
		return false, nil
	case err != nil:
		s.Metrics.writeFailed(err)
		return false, Unavailable("restoring "+pin.Ref().String(), err)
	}
	if created {
		s.Metrics.refsCreated(1)
	}
	return created, nil
}
