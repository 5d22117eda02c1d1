package mirrors

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/refs"
)

// HostKind answers the host kind of a mirror; a local project is
// refs.HostGitLab. It makes *Projects a refs.PinFetcher.
func (s *Projects) HostKind(p refs.Project) (refs.HostKind, error) {
	pi, err := s.record(p)
	if err != nil {
		return "", err
	}
	if !pi.Mirror {
		return refs.HostGitLab, nil
	}
	return refs.HostKind(pi.Config.Host), nil
}

// FetchMergeInputs fetches the inputs of a computed merge on a mirror, so
// that they are what the host has in this moment: every named ref (a
// branch is refs/heads/<name> upstream) into the same name in the mirror,
// and every SHA the mirror lacks by SHA, all in one shared fetch. A ref the
// upstream lacks is *refs.RefNotFoundError even when the mirror still has an
// older copy (the host no longer has it), a SHA it lacks
// *refs.CommitNotFoundError; other failures are *UpstreamUnavailableError or
// *UpstreamRejectedError. The mirror's own refs under refs/pipelines/ are
// never fetched. A local project fetches nothing.
func (s *Projects) FetchMergeInputs(ctx context.Context, repo *gitops.Repo, p refs.Project, inputs []gitops.Revision) error {
	pi, err := s.record(p)
	if err != nil {
		return err
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
	return notUpstream(s.fetch(ctx, p, pi.Config, specs))
}

// FetchForPin fetches what a pin on a mirror needs, so that the pin has
// what the host has in this moment: for a pin by merge request alone,
// mergeRef (the host's merge ref, see refs.HostKind.PinMergeRef); for a pin
// by SHA, that SHA when the mirror lacks it. Concurrent pins of one mirror
// share one fetch. Failures are *UpstreamUnavailableError,
// *UpstreamRejectedError, *refs.MergeRefNotFoundError or
// *refs.CommitNotFoundError; a fetch writes only the mirror's own refs,
// never a pipeline ref. A local project fetches nothing.
func (s *Projects) FetchForPin(ctx context.Context, repo *gitops.Repo, req refs.PinRequest, mergeRef gitops.RefName) error {
	pi, err := s.record(req.Project)
	if err != nil {
		return err
	}
	if !pi.Mirror {
		return nil
	}
	if req.SHA != "" {
		err := repo.IsCommit(req.SHA)
		var nf *gitops.ObjectNotFoundError
		if !errors.As(err, &nf) {
			return nil // here already (or not a commit: the pin says so)
		}
		return notUpstream(s.fetch(ctx, req.Project, pi.Config, []string{string(req.SHA)}))
	}
	if mergeRef == "" {
		return nil
	}
	err = s.fetch(ctx, req.Project, pi.Config, []string{"+" + string(mergeRef) + ":" + string(mergeRef)})
	var missing *UpstreamRefNotFoundError
	if errors.As(err, &missing) {
		return &refs.MergeRefNotFoundError{Ref: mergeRef}
	}
	return err
}

// notUpstream turns a ref or SHA that the upstream lacks too into the
// domain's error about it: *refs.CommitNotFoundError for a SHA,
// *refs.RefNotFoundError for a ref.
func notUpstream(err error) error {
	var missing *UpstreamRefNotFoundError
	if !errors.As(err, &missing) {
		return err
	}
	if id, perr := gitops.ParseObjectID(missing.Ref); perr == nil {
		return &refs.CommitNotFoundError{SHA: id, Reason: "no such object here or upstream"}
	}
	return &refs.RefNotFoundError{Ref: gitops.RefName(missing.Ref)}
}

// recordTTL is how long a pin trusts what it read of a project's record:
// reading a repository's config costs a file read and a parse on every pin,
// of local projects too, while a record changes only by a PUT or DELETE
// (seen at once in this process, within this time in others).
const recordTTL = time.Second

// record is what the repos root says about p, read at most once per
// recordTTL, its failures in the domain's terms. A pin reads it after it
// opened the repository, so a mirror deleted in between is found gone
// here: *refs.ProjectNotFoundError (404), which refs.Unavailable alone
// would pass on untyped (500); other failures are *refs.UnavailableError.
func (s *Projects) record(p refs.Project) (gitops.ProjectInfo, error) {
	pi, err := s.records.Get(p, recordTTL, func(gitops.ProjectInfo) (gitops.ProjectInfo, error) { return s.Repos.Project(p) })
	if err != nil {
		return gitops.ProjectInfo{}, refs.FromGit(p, "reading project", err)
	}
	return pi, nil
}

// fetch runs a shared fetch of refspecs into the mirror, its failures in
// the domain's terms.
func (s *Projects) fetch(ctx context.Context, p refs.Project, cfg gitops.MirrorConfig, refspecs []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	up, err := s.upstream(ctx, p, cfg)
	if err != nil {
		return err
	}
	err = s.Fetcher.FetchMirror(ctx, p, up, refspecs)
	if refs.IsProjectNotFound(err) { // deleted since its record was read
		s.records.Forget(p)
		return refs.FromGit(p, "fetching from upstream", err)
	}
	if limits.IsLowDisk(err) || isBusy(err) {
		return upstreamError(p, "fetching from upstream", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &UpstreamUnavailableError{Project: p, Reason: "no answer within " + s.timeout().String(), Cause: err}
	}
	return upstreamError(p, "fetching from upstream", err)
}
