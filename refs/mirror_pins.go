package refs

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// PinFetcher brings into a project what a pin names before the pin is made,
// and says which ref is the merge ref of a merge request there. *Projects
// implements it: for a mirror it fetches from upstream, for a local project
// it does nothing.
type PinFetcher interface {
	FetchForPin(ctx context.Context, repo *gitops.Repo, req PinRequest) (mergeRef gitops.RefName, err error)
}

// FetchForPin fetches what a pin on a mirror needs, so that the pin has
// what the host has in this moment: for a pin by merge request alone, the
// host's merge ref (none for gitea and generic: *MergeRefNotFoundError);
// for a pin by SHA, that SHA when the mirror lacks it. Concurrent pins of
// one mirror share one fetch. Failures are *UpstreamUnavailableError,
// *UpstreamRejectedError, *MergeRefNotFoundError or *CommitNotFoundError; a
// fetch writes only the mirror's own refs, never a pipeline ref. A local
// project fetches nothing, and its merge ref is GitLab's.
func (s *Projects) FetchForPin(ctx context.Context, repo *gitops.Repo, req PinRequest) (gitops.RefName, error) {
	gitlabRef := gitops.MergeRequestRef(int64(req.MergeRequestIID))
	pi, err := s.record(req.Project)
	if err != nil {
		return "", unavailable("reading project", err)
	}
	if !pi.Mirror {
		return gitlabRef, nil
	}
	host := HostKind(pi.Config.Host)
	if req.SHA != "" {
		err := repo.IsCommit(req.SHA)
		var nf *gitops.ObjectNotFoundError
		if !errors.As(err, &nf) {
			return gitlabRef, nil // here already (or not a commit: the pin says so)
		}
		err = s.fetch(ctx, req.Project, pi.Config, []string{string(req.SHA)})
		var missing *UpstreamRefNotFoundError
		if errors.As(err, &missing) {
			return "", &CommitNotFoundError{SHA: req.SHA, Reason: "no such object here or upstream"}
		}
		return gitlabRef, err
	}
	mergeRef, ok := host.MergeRef(req.MergeRequestIID)
	if !ok {
		return "", &MergeRefNotFoundError{Ref: gitops.RefName("refs/pull/" + strconv.FormatInt(int64(req.MergeRequestIID), 10) +
			"/merge (a " + string(host) + " host has no merge refs)")}
	}
	err = s.fetch(ctx, req.Project, pi.Config, []string{"+" + string(mergeRef) + ":" + string(mergeRef)})
	var missing *UpstreamRefNotFoundError
	if errors.As(err, &missing) {
		return "", &MergeRefNotFoundError{Ref: mergeRef}
	}
	return mergeRef, err
}

// recordTTL is how long a pin trusts what it read of a project's record:
// reading a repository's config costs a file read and a parse on every pin,
// of local projects too, while a record changes only by a PUT or DELETE
// (seen at once in this process, within this time in others).
const recordTTL = time.Second

type cachedRecord struct {
	info gitops.ProjectInfo
	at   time.Time
}

// record is what the repos root says about p, read at most once per
// recordTTL.
func (s *Projects) record(p Project) (gitops.ProjectInfo, error) {
	if v, ok := s.records.Load(p); ok {
		if c := v.(cachedRecord); time.Since(c.at) < recordTTL {
			return c.info, nil
		}
	}
	pi, err := s.Repos.Project(p)
	if err != nil {
		s.records.Delete(p)
		return gitops.ProjectInfo{}, err
	}
	s.records.Store(p, cachedRecord{info: pi, at: time.Now()})
	return pi, nil
}

// fetch runs a shared fetch of refspecs into the mirror, its failures in
// the domain's terms.
func (s *Projects) fetch(ctx context.Context, p Project, cfg gitops.MirrorConfig, refspecs []string) error {
	up, err := s.upstream(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	err = s.Fetcher.FetchMirror(ctx, p, up, refspecs)
	var gone *gitops.ProjectNotFoundError
	if errors.As(err, &gone) { // deleted since its record was read
		s.records.Delete(p)
		return &ProjectNotFoundError{Project: p}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &UpstreamUnavailableError{Project: p, Reason: "no answer within " + s.timeout().String(), Cause: err}
	}
	return upstreamError(p, "fetching from upstream", err)
}
