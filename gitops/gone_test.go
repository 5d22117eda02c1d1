package gitops

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A repository removed (renamed away, as a mirror's deletion does) after it
// was opened is a project not found, not a missing commit: a handle opened
// before finds no object in it.
func TestIsCommitOnARemovedRepositoryIsProjectNotFound(t *testing.T) {
	f := newFixture(t)
	if err := f.repo.IsCommit(f.c1); err != nil { // a handle open on it
		t.Fatal(err)
	}
	if err := os.Rename(f.repo.dir, filepath.Join(t.TempDir(), "away.git")); err != nil {
		t.Fatal(err)
	}
	err := f.repo.IsCommit(f.c1)
	var gone *ProjectNotFoundError
	if !errors.As(err, &gone) {
		t.Fatalf("IsCommit on a removed repository = %T %v, want *ProjectNotFoundError", err, err)
	}
}

// A fetch into a mirror removed meanwhile is a project not found, not the
// upstream refusing ("not a git repository" is git's word for the mirror).
func TestFetchMirrorIntoARemovedMirrorIsProjectNotFound(t *testing.T) {
	root, name, up, dir := fetchedMirror(t)
	if err := os.Rename(dir, filepath.Join(t.TempDir(), "away.git")); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Root: root}
	err := f.FetchMirror(t.Context(), name, Upstream{URL: "file://" + up.Dir}, []string{"+refs/heads/main:refs/heads/main"})
	var gone *ProjectNotFoundError
	if !errors.As(err, &gone) {
		t.Fatalf("FetchMirror into a removed mirror = %T %v, want *ProjectNotFoundError", err, err)
	}
}
