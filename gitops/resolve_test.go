package gitops

import (
	"errors"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// RepoPath remembers what it found, never what it did not: a repository
// created after a failed lookup is found at once.
func TestRepoPathFindsNewRepositoryAtOnce(t *testing.T) {
	f := newFixture(t)
	var nf *ProjectNotFoundError
	if _, err := f.root.RepoPath("group/later"); !errors.As(err, &nf) {
		t.Fatalf("RepoPath of a missing project = %v, want ProjectNotFoundError", err)
	}
	testdata.NewBareRepo(t, f.root.Dir, "group/later")
	path, err := f.root.RepoPath("group/later")
	if err != nil {
		t.Fatalf("RepoPath right after the repository was created = %v", err)
	}
	again, err := f.root.RepoPath("group/later")
	if err != nil || again != path {
		t.Fatalf("second RepoPath = %q, %v; want %q", again, err, path)
	}
}
