package refs

import (
	"context"
	"errors"

	"github.com/refkeeper/refkeeper/gitops"
)

// recoverPin brings back the record of a pipeline ref that is on disk with
// no record at all: Redis lost it (a failover, a restart without
// persistence) after the pin was acknowledged. The record comes back as a
// sweep would adopt the ref: pinned, at the ref's SHA, first seen now,
// marked adopted (so fetch tokens issued before the loss open it again);
// the request that named the pin then applies what it says (a merge request
// iid, a finish). ok is false when there is no ref either. A deletion
// recorded meanwhile wins: the answer is then the record as it is.
func (s *Service) recoverPin(ctx context.Context, repo *gitops.Repo, p Project, id PipelineID) (pin Pin, ok bool, err error) {
	listedAt := s.now()
	sha, err := repo.ResolveRef(id.Ref())
	var nf *gitops.RefNotFoundError
	if errors.As(err, &nf) {
		return Pin{}, false, nil
	}
	if err != nil {
		return Pin{}, false, Unavailable("reading ref", err)
	}
	out, err := s.Store.Adopt(ctx, p, id, sha, s.now(), listedAt)
	if err != nil {
		return Pin{}, false, Unavailable("recording pin", err)
	}
	if out.Status == statusAdopted {
		s.Metrics.refsAdopted(1)
		s.registerProject(ctx, p)
		s.logger().Warn("pipeline ref had no record (Redis lost it): recorded again", "project", p,
			"ref", id.Ref(), "sha", sha)
	}
	pin, ok, err = s.Store.Get(ctx, p, id)
	if err != nil {
		return Pin{}, false, Unavailable("reading pin", err)
	}
	return pin, ok, nil
}
