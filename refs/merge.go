package refs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/refkeeper/refkeeper/gitops"
)

// MergeMode is merge or squash; see gitops.MergeMode.
type MergeMode = gitops.MergeMode

// MergeInput asks for a pin of a merge the service computes.
type MergeInput struct {
	// Source and Target are each a 40-hex SHA, a full ref name or a branch
	// name. An empty Source is the merge request's head ref.
	Source, Target string
	// Mode is gitops.MergeModeMerge or gitops.MergeModeSquash; empty: merge.
	Mode MergeMode
}

// Merge is what a computed pin was made of: the commit is a function of
// these values, so the pin record keeps them and the commit can be made
// again if it vanishes.
type Merge struct {
	SourceSHA, TargetSHA ObjectID
	Mode                 gitops.MergeMode
	Identity             gitops.Identity
}

func (m *Merge) spec() gitops.MergeSpec {
	return gitops.MergeSpec{Source: m.SourceSHA, Target: m.TargetSHA, Mode: m.Mode, Identity: m.Identity}
}

// encode is the record's "merge" field: mode, source, target, identity.
func (m *Merge) encode() string {
	if m == nil {
		return ""
	}
	return strings.Join([]string{string(m.Mode), string(m.SourceSHA), string(m.TargetSHA), m.Identity.String()}, " ")
}

// decodeMerge reads the record's "merge" field; nil when there is none or
// it cannot be read (the pin then behaves as a pin by SHA).
func decodeMerge(s string) *Merge {
	parts := strings.SplitN(s, " ", 4)
	if len(parts) != 4 {
		return nil
	}
	mode, err := gitops.ParseMergeMode(parts[0])
	source, serr := gitops.ParseObjectID(parts[1])
	target, terr := gitops.ParseObjectID(parts[2])
	id, ierr := gitops.ParseIdentity(parts[3])
	if err != nil || serr != nil || terr != nil || ierr != nil {
		return nil
	}
	return &Merge{SourceSHA: source, TargetSHA: target, Mode: mode, Identity: id}
}

func (s *Service) mergeIdentity() gitops.Identity {
	if s.MergeIdentity != (gitops.Identity{}) {
		return s.MergeIdentity
	}
	return gitops.DefaultIdentity
}

// computeMerge resolves a pin's merge inputs and writes their merge commit
// (objects only, no ref). An omitted source is the merge request's head ref
// on the project's host kind (a local project is gitlab's); a host kind
// with none (generic) needs a source. On a mirror the inputs are fetched
// first (see PinFetcher.FetchMergeInputs). Nothing is written when an input
// is missing or the merge conflicts.
func (s *Service) computeMerge(ctx context.Context, repo *gitops.Repo, req PinRequest) (ObjectID, *Merge, error) {
	in := req.Merge
	mode, err := gitops.ParseMergeMode(string(in.Mode))
	if err != nil {
		return "", nil, &InvalidInputError{Field: "merge.mode", Reason: err.Error()}
	}
	source := in.Source
	if source == "" {
		if req.MergeRequestIID == 0 {
			return "", nil, &InvalidInputError{Field: "merge.source", Reason: "source is required without merge_request_iid"}
		}
		host, err := s.hostKind(req.Project)
		if err != nil {
			return "", nil, err
		}
		head, ok := host.HeadRef(req.MergeRequestIID)
		if !ok {
			return "", nil, &InvalidInputError{Field: "merge.source",
				Reason: "source is required: a " + string(host) + " host has no head ref of a merge request"}
		}
		source = string(head)
	}
	src, err := parseMergeInput("merge.source", source)
	if err != nil {
		return "", nil, err
	}
	tgt, err := parseMergeInput("merge.target", in.Target)
	if err != nil {
		return "", nil, err
	}
	if s.Mirrors != nil {
		if err := s.Mirrors.FetchMergeInputs(ctx, repo, req.Project, []gitops.Revision{src, tgt}); err != nil {
			return "", nil, err
		}
	}
	m := &Merge{Mode: mode, Identity: s.mergeIdentity()}
	if m.SourceSHA, err = s.resolveMergeInput(repo, req.Project, src); err != nil {
		return "", nil, err
	}
	if m.TargetSHA, err = s.resolveMergeInput(repo, req.Project, tgt); err != nil {
		return "", nil, err
	}
	sha, err := s.writeMerge(ctx, repo, m)
	return sha, m, err
}

// parseMergeInput reads a SHA, full ref or branch name.
func parseMergeInput(field, value string) (gitops.Revision, error) {
	rev, err := gitops.ParseRevision(value)
	if err != nil {
		return gitops.Revision{}, &InvalidInputError{Field: field, Reason: err.Error()}
	}
	return rev, nil
}

// resolveMergeInput turns a SHA or ref into the commit it names now.
func (s *Service) resolveMergeInput(repo *gitops.Repo, p Project, rev gitops.Revision) (ObjectID, error) {
	if rev.ID != "" {
		return rev.ID, s.checkCommit(repo, p, rev.ID)
	}
	sha, err := repo.ResolveCommit(rev.Ref)
	var noRef *gitops.RefNotFoundError
	if errors.As(err, &noRef) {
		return "", &RefNotFoundError{Ref: rev.Ref}
	}
	if err != nil {
		err = FromGit(p, "reading "+string(rev.Ref), err)
		var notCommit *CommitNotFoundError
		if errors.As(err, &notCommit) {
			notCommit.Reason += " (" + string(rev.Ref) + " points at it)"
		}
		return "", err
	}
	return sha, nil
}

// writeMerge writes the merge commit of m, with gitops' errors turned into
// the domain's.
func (s *Service) writeMerge(ctx context.Context, repo *gitops.Repo, m *Merge) (ObjectID, error) {
	sha, err := repo.Merge(ctx, m.spec())
	var (
		conflict  *gitops.MergeConflictError
		unrelated *gitops.UnrelatedHistoriesError
		missing   *CommitNotFoundError
	)
	switch {
	case err == nil:
		return sha, nil
	case errors.As(err, &conflict):
		return "", &MergeConflictError{Source: m.SourceSHA, Target: m.TargetSHA, Paths: conflict.Paths, Total: conflict.Total}
	case errors.As(err, &unrelated):
		return "", &MergeConflictError{Source: m.SourceSHA, Target: m.TargetSHA, Reason: "they have no common ancestor"}
	}
	err = FromGit(repo.Name(), "computing merge", err)
	if !errors.As(err, &missing) {
		// A merge writes objects: a failure to is counted like a failed write.
		s.Metrics.writeFailed(err)
	}
	return "", err
}

// ensureCommit checks that a pin's commit exists before its ref is made
// again. A computed merge whose commit vanished (a gc after its ref was
// lost, a restored backup) is computed again from the record's inputs; it
// is used only if it is the pinned commit, which it is unless the inputs
// themselves are gone.
func (s *Service) ensureCommit(ctx context.Context, repo *gitops.Repo, pin Pin) error {
	err := repo.IsCommit(pin.SHA)
	var noObject *gitops.ObjectNotFoundError
	if err == nil || pin.Merge == nil || !errors.As(err, &noObject) {
		return err
	}
	sha, err := s.writeMerge(ctx, repo, pin.Merge)
	if err != nil {
		return fmt.Errorf("computing the merge again: %w", err)
	}
	if sha != pin.SHA {
		return fmt.Errorf("computing the merge again gave %s, not the pinned %s", sha, pin.SHA)
	}
	s.logger().Info("computed a vanished merge commit again", "project", pin.Project, "ref", pin.Ref(), "sha", sha)
	return nil
}
