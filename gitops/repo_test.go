package gitops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// fixture is a repos root with one project holding two commits.
type fixture struct {
	root    *Root
	git     *testdata.Repo
	repo    *Repo
	c1, c2  ObjectID
	project ProjectName
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testdata.GitAvailable(t)
	dir := t.TempDir()
	g := testdata.NewBareRepo(t, dir, "group/app")
	c1 := g.Commit(t, "main", map[string]string{"a.txt": "one\n"}, "first")
	c2 := g.Commit(t, "main", map[string]string{"a.txt": "two\n"}, "second")
	root := &Root{Dir: dir}
	t.Cleanup(root.Close)
	repo, err := root.Open("group/app")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{root: root, git: g, repo: repo, c1: ObjectID(c1), c2: ObjectID(c2), project: "group/app"}
}

func TestRepoPathStaysInsideRoot(t *testing.T) {
	f := newFixture(t)
	outside := t.TempDir()
	testdata.NewBareRepo(t, outside, "secret")
	// A symlink inside the root that leads to a repository outside it.
	if err := os.Symlink(filepath.Join(outside, "secret.git"), filepath.Join(f.root.Dir, "escape.git")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.root.Dir, "plain.git"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []ProjectName{"escape", "plain", "missing", "group"} {
		_, err := f.root.RepoPath(name)
		var nf *ProjectNotFoundError
		if !errors.As(err, &nf) {
			t.Errorf("RepoPath(%s) = %v, want ProjectNotFoundError", name, err)
		}
	}
	if _, err := f.root.RepoPath("../x"); err == nil {
		t.Errorf("RepoPath(../x) accepted an invalid name")
	}
	path, err := f.root.RepoPath("group/app")
	if err != nil || filepath.Base(path) != "app.git" {
		t.Fatalf("RepoPath(group/app) = %q, %v", path, err)
	}
	projects, err := f.root.Projects(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(projects) != 1 || projects[0] != "group/app" {
		t.Fatalf("Projects = %v, want [group/app] (no symlinked or plain dirs)", projects)
	}
}

func TestIsCommit(t *testing.T) {
	f := newFixture(t)
	tag := f.git.AnnotatedTag(t, "v1", string(f.c1))
	tests := []struct {
		name string
		id   ObjectID
		want any // nil, *ObjectNotFoundError or *NotCommitError
	}{
		{"commit", f.c1, nil},
		{"missing", ObjectID("1234567890123456789012345678901234567890"), &ObjectNotFoundError{}},
		{"tree", ObjectID(f.git.TreeOf(t, string(f.c1))), &NotCommitError{}},
		{"blob", ObjectID(f.git.BlobOf(t, string(f.c1), "a.txt")), &NotCommitError{}},
		{"annotated tag", ObjectID(tag), &NotCommitError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.repo.IsCommit(tt.id)
			switch tt.want.(type) {
			case nil:
				if err != nil {
					t.Fatalf("IsCommit = %v, want nil", err)
				}
			case *ObjectNotFoundError:
				var e *ObjectNotFoundError
				if !errors.As(err, &e) {
					t.Fatalf("IsCommit = %v, want ObjectNotFoundError", err)
				}
			case *NotCommitError:
				var e *NotCommitError
				if !errors.As(err, &e) {
					t.Fatalf("IsCommit = %v, want NotCommitError", err)
				}
			}
		})
	}
}

func TestIsCommitSeesObjectsWrittenLater(t *testing.T) {
	f := newFixture(t)
	if err := f.repo.IsCommit(f.c1); err != nil { // warm a pooled handle
		t.Fatal(err)
	}
	c3 := f.git.Commit(t, "other", map[string]string{"b.txt": "new\n"}, "third")
	f.git.Git(t, "repack", "-a", "-d", "-q")
	if err := f.repo.IsCommit(ObjectID(c3)); err != nil {
		t.Fatalf("IsCommit of a commit packed after the handle opened: %v", err)
	}
}

func TestCreate(t *testing.T) {
	f := newFixture(t)
	ref := PipelineRef(7)
	created, err := f.repo.Create(t.Context(), ref, f.c1)
	if err != nil || !created {
		t.Fatalf("first Create = %v, %v; want created", created, err)
	}
	created, err = f.repo.Create(t.Context(), ref, f.c1)
	if err != nil || created {
		t.Fatalf("Create of the same SHA = %v, %v; want not created, no error", created, err)
	}
	_, err = f.repo.Create(t.Context(), ref, f.c2)
	var mismatch *MismatchingStateError
	if !errors.As(err, &mismatch) || mismatch.Actual != f.c1 {
		t.Fatalf("Create of another SHA = %v, want MismatchingStateError at %s", err, f.c1)
	}
	if sha, _ := f.git.RefSHA(t, string(ref)); sha != string(f.c1) {
		t.Fatalf("ref moved to %s", sha)
	}
	for _, bad := range []RefName{"refs/heads/main", "refs/merge-requests/1/merge", "HEAD", "refs/pipelines/01"} {
		var forbidden *ForbiddenRefError
		if _, err := f.repo.Create(t.Context(), bad, f.c1); !errors.As(err, &forbidden) {
			t.Errorf("Create(%s) = %v, want ForbiddenRefError", bad, err)
		}
	}
	if sha, _ := f.git.RefSHA(t, "refs/heads/main"); sha != string(f.c2) {
		t.Fatalf("refs/heads/main was touched: %s", sha)
	}
}

// TestCreateRace pins one ref from many goroutines, each through its own Root
// (its own libgit2 handles) with alternating SHAs: exactly one creates it,
// the ref ends where that one put it, and every other call sees "same SHA"
// or a mismatch.
func TestCreateRace(t *testing.T) {
	f := newFixture(t)
	const n = 50
	ref := PipelineRef(99)
	var wg sync.WaitGroup
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := &Root{Dir: f.root.Dir}
			defer root.Close()
			repo, err := root.Open(f.project)
			if err != nil {
				errs[i] = err
				return
			}
			sha := f.c1
			if i%2 == 1 {
				sha = f.c2
			}
			created[i], errs[i] = repo.Create(t.Context(), ref, sha)
		}()
	}
	wg.Wait()
	winners := 0
	final, _ := f.git.RefSHA(t, string(ref))
	for i := range n {
		var mismatch *MismatchingStateError
		switch {
		case created[i]:
			winners++
		case errs[i] == nil:
		case errors.As(errs[i], &mismatch):
			if string(mismatch.Actual) != final {
				t.Errorf("loser %d saw %s, ref is at %s", i, mismatch.Actual, final)
			}
		default:
			t.Errorf("goroutine %d: %v", i, errs[i])
		}
	}
	if winners != 1 {
		t.Fatalf("%d goroutines created the ref, want exactly 1", winners)
	}
}

func TestDeleteIsCompareAndDelete(t *testing.T) {
	f := newFixture(t)
	ref := PipelineRef(3)
	if _, err := f.repo.Create(t.Context(), ref, f.c1); err != nil {
		t.Fatal(err)
	}
	_, err := f.repo.Delete(t.Context(), ref, f.c2)
	var mismatch *MismatchingStateError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Delete with the wrong old SHA = %v, want MismatchingStateError", err)
	}
	if _, ok := f.git.RefSHA(t, string(ref)); !ok {
		t.Fatal("a mismatching delete removed the ref")
	}
	deleted, err := f.repo.Delete(t.Context(), ref, f.c1)
	if err != nil || !deleted {
		t.Fatalf("Delete = %v, %v", deleted, err)
	}
	deleted, err = f.repo.Delete(t.Context(), ref, f.c1)
	if err != nil || deleted {
		t.Fatalf("second Delete = %v, %v; want already gone, no error", deleted, err)
	}
}

func TestDeleteBatch(t *testing.T) {
	f := newFixture(t)
	f.git.PipelineRefs(t, 1, 200, string(f.c1))
	f.git.PackRefs(t)
	f.git.Git(t, "update-ref", "refs/pipelines/201", string(f.c1)) // one loose ref too
	var batch []RefState
	for id := int64(1); id <= 201; id++ {
		batch = append(batch, RefState{Ref: PipelineRef(id), ID: f.c1})
	}
	// Pipeline 5 moved (re-created at another SHA), 6 is already gone.
	f.git.Git(t, "update-ref", "refs/pipelines/5", string(f.c2), string(f.c1))
	f.git.Git(t, "update-ref", "-d", "refs/pipelines/6")
	results, err := f.repo.DeleteBatch(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[DeleteOutcome]int{}
	for _, r := range results {
		counts[r.Outcome]++
	}
	if counts[Deleted] != 199 || counts[Moved] != 1 || counts[AlreadyGone] != 1 {
		t.Fatalf("outcomes = %v", counts)
	}
	if results[4].Outcome != Moved || results[4].Actual != f.c2 {
		t.Fatalf("pipeline 5: %+v", results[4])
	}
	left := f.git.Refs(t, "refs/pipelines/")
	if len(left) != 1 || left["refs/pipelines/5"] != string(f.c2) {
		t.Fatalf("refs left = %v, want only the moved one", left)
	}
}

func TestStaleLockIsRemoved(t *testing.T) {
	f := newFixture(t)
	f.root.StaleLockAge = time.Minute
	lock := filepath.Join(f.repo.Dir(), "refs", "pipelines", "8.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	created, err := f.repo.Create(t.Context(), PipelineRef(8), f.c1)
	if err != nil || !created {
		t.Fatalf("Create behind a stale lock = %v, %v", created, err)
	}
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale lock still there: %v", err)
	}
}

func TestLiveLockIsTransient(t *testing.T) {
	f := newFixture(t)
	f.root.LockTimeout = 50 * time.Millisecond
	lock := filepath.Join(f.repo.Dir(), "refs", "pipelines", "9.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.repo.Create(t.Context(), PipelineRef(9), f.c1)
	var locked *LockedError
	if !errors.As(err, &locked) || !IsTransient(err) {
		t.Fatalf("Create behind a live lock = %v, want transient LockedError", err)
	}
	if _, ok := f.git.RefSHA(t, "refs/pipelines/9"); ok {
		t.Fatal("ref created despite the lock")
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if created, err := f.repo.Create(t.Context(), PipelineRef(9), f.c1); err != nil || !created {
		t.Fatalf("Create after the lock went = %v, %v", created, err)
	}
}

func TestPipelineRefsAndResolve(t *testing.T) {
	f := newFixture(t)
	f.git.PipelineRefs(t, 10, 5, string(f.c1))
	f.git.CreateRefs(t, map[string]string{
		"refs/pipelines/007":    string(f.c1), // not an id the service writes
		"refs/pipelines/1/nest": string(f.c1),
		"refs/heads/feature":    string(f.c2),
	})
	refs, err := f.repo.PipelineRefs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 5 {
		t.Fatalf("PipelineRefs = %v, want the 5 numeric ones", refs)
	}
	id, err := f.repo.ResolveRef("refs/heads/feature")
	if err != nil || id != f.c2 {
		t.Fatalf("ResolveRef = %s, %v", id, err)
	}
	var nf *RefNotFoundError
	if _, err := f.repo.ResolveRef("refs/heads/nope"); !errors.As(err, &nf) {
		t.Fatalf("ResolveRef of a missing ref = %v", err)
	}
}

func TestCreateDemo(t *testing.T) {
	testdata.GitAvailable(t)
	root := &Root{Dir: t.TempDir()}
	defer root.Close()
	created, err := root.CreateDemo("demo/app")
	if err != nil || !created {
		t.Fatalf("CreateDemo = %v, %v", created, err)
	}
	again, err := root.CreateDemo("demo/app")
	if err != nil || again {
		t.Fatalf("second CreateDemo = %v, %v", again, err)
	}
	g := &testdata.Repo{Dir: filepath.Join(root.Dir, "demo", "app.git")}
	merge, ok := g.RefSHA(t, string(MergeRequestRef(DemoMergeRequestIID)))
	if !ok {
		t.Fatal("no merge ref")
	}
	parents := g.Git(t, "rev-list", "--parents", "-n", "1", merge)
	if n := len(strings.Fields(parents)); n != 3 {
		t.Fatalf("merge ref %s is not a two-parent merge: %q", merge, parents)
	}
	if got := g.ReadFileAt(t, merge, "NOTES.md"); got == "" {
		t.Fatal("merge lacks main's new file")
	}
	if got := g.ReadFileAt(t, merge, "app.sh"); !strings.Contains(got, "${1:-world}") {
		t.Fatalf("merge lacks the feature's change: %q", got)
	}
}
