package refs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// PinFetcher brings into a project what a pin names before the pin is made,
// and says which ref is the merge ref of a merge request there. *Projects
// implements it: for a mirror it fetches from upstream, for a local project
// it does nothing.
type PinFetcher interface {
	FetchForPin(ctx context.Context, repo *gitops.Repo, req PinRequest) (mergeRef gitops.RefName, err error)
	// HostKind is where the project's host keeps a merge request's refs.
	HostKind(p Project) (HostKind, error)
	// FetchMergeInputs brings a computed merge's named inputs into the
	// project before they are resolved.
	FetchMergeInputs(ctx context.Context, repo *gitops.Repo, p Project, inputs []gitops.Revision) error
}

// HostKind answers the host kind of a mirror; a local project is HostGitLab.
func (s *Projects) HostKind(p Project) (HostKind, error) {
	pi, err := s.record(p)
	if err != nil {
		return "", unavailable("reading project", err)
	}
	if !pi.Mirror {
		return HostGitLab, nil
	}
	return HostKind(pi.Config.Host), nil
}

// FetchMergeInputs fetches the inputs of a computed merge on a mirror, so
// that they are what the host has in this moment: every named ref (a
// branch is refs/heads/<name> upstream) into the same name in the mirror,
// and every SHA the mirror lacks by SHA, all in one shared fetch. A ref the
// upstream lacks is *RefNotFoundError even when the mirror still has an
// older copy (the host no longer has it), a SHA it lacks
// *CommitNotFoundError; other failures are *UpstreamUnavailableError or
// *UpstreamRejectedError. The mirror's own refs under refs/pipelines/ are
// never fetched. A local project fetches nothing.
func (s *Projects) FetchMergeInputs(ctx context.Context, repo *gitops.Repo, p Project, inputs []gitops.Revision) error {
	pi, err := s.record(p)
	if err != nil {
		return unavailable("reading project", err)
	}
	if !pi.Mirror {
		return nil
	}
	var specs []string
	for _, in := range inputs {
		switch {
		case in.ID != "":
			var nf *gitops.ObjectNotFoundError
			if errors.As(repo.IsCommit(in.ID), &nf) {
				specs = append(specs, string(in.ID))
			}
		case !strings.HasPrefix(string(in.Ref), gitops.PipelineRefPrefix):
			specs = append(specs, "+"+string(in.Ref)+":"+string(in.Ref))
		}
	}
	if len(specs) == 0 {
		return nil
	}
	err = s.fetch(ctx, p, pi.Config, specs)
	var missing *UpstreamRefNotFoundError
	if !errors.As(err, &missing) {
		return err
	}
	if id, perr := gitops.ParseObjectID(missing.Ref); perr == nil {
		return &CommitNotFoundError{SHA: id, Reason: "no such object here or upstream"}
	}
	return &RefNotFoundError{Ref: gitops.RefName(missing.Ref)}
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
