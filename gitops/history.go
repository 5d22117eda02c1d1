package gitops

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/refkeeper/refkeeper/gitexec"
)

// Ancestors lists the commits id reaches, id first and newest first, at most
// limit of them: what a scoped fetch may name in its haves. It answers
// ObjectNotFoundError when id is not in the repository.
func (r *Repo) Ancestors(ctx context.Context, id ObjectID, limit int) ([]ObjectID, error) {
	if err := r.IsCommit(id); err != nil {
		return nil, err
	}
	cmd := r.root.command(ctx, r.dir, "rev-list", "--max-count="+strconv.Itoa(limit), string(id), "--")
	var stderr gitexec.Stderr
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &CommandError{Args: []string{"rev-list"}, Stderr: stderr.String(), Err: err}
	}
	ids := make([]ObjectID, 0, bytes.Count(out, []byte("\n")))
	for line := range strings.Lines(string(out)) {
		ids = append(ids, ObjectID(strings.TrimSpace(line)))
	}
	return ids, nil
}
