package gitops

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// mergeFixture is a repository with main and feature diverged from base.
type mergeFixture struct {
	root *Root
	git  *testdata.Repo
	repo *Repo
}

func newMergeFixture(t *testing.T) *mergeFixture {
	t.Helper()
	testdata.GitAvailable(t)
	dir := t.TempDir()
	g := testdata.NewBareRepo(t, dir, "group/app")
	g.Commit(t, "main", map[string]string{"app.txt": "line 1\nline 2\nline 3\n", "lib/util.txt": "util\n"}, "base")
	g.Git(t, "branch", "feature", "main")
	root := &Root{Dir: dir}
	t.Cleanup(root.Close)
	repo, err := root.Open("group/app")
	if err != nil {
		t.Fatal(err)
	}
	return &mergeFixture{root: root, git: g, repo: repo}
}

func (f *mergeFixture) head(t *testing.T, branch string) ObjectID {
	t.Helper()
	sha, ok := f.git.RefSHA(t, "refs/heads/"+branch)
	if !ok {
		t.Fatalf("no branch %s", branch)
	}
	return ObjectID(sha)
}

// objects lists every object of the repository, loose or packed.
func (f *mergeFixture) objects(t *testing.T) []string {
	t.Helper()
	out := f.git.Git(t, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
	return strings.Fields(out)
}

// merge computes a merge and checks it against the git CLI's recomputation.
func (f *mergeFixture) merge(t *testing.T, source, target ObjectID, mode MergeMode, id Identity) ObjectID {
	t.Helper()
	got, err := f.repo.Merge(context.Background(), MergeSpec{Source: source, Target: target, Mode: mode, Identity: id})
	if err != nil {
		t.Fatalf("Merge(%s into %s, %s) = %v", source, target, mode, err)
	}
	if id == (Identity{}) {
		id = DefaultIdentity
	}
	want := f.git.RecomputeMerge(t, string(source), string(target), string(mode), id.Name, id.Email)
	if string(got) != want {
		t.Fatalf("Merge = %s, git merge-tree + commit-tree = %s\nours:\n%s\ngit's:\n%s", got, want,
			f.git.Git(t, "cat-file", "commit", string(got)), f.git.Git(t, "cat-file", "commit", want))
	}
	return got
}

func TestMergeEqualsGitRecomputation(t *testing.T) {
	f := newMergeFixture(t)
	f.git.Commit(t, "main", map[string]string{"app.txt": "line 1 main\nline 2\nline 3\n"}, "main edits line 1")
	f.git.Commit(t, "feature", map[string]string{"app.txt": "line 1\nline 2\nline 3 feature\n", "new.txt": "new\n"}, "feature edits line 3")
	target, source := f.head(t, "main"), f.head(t, "feature")

	for _, mode := range []MergeMode{MergeModeMerge, MergeModeSquash} {
		t.Run(string(mode), func(t *testing.T) {
			sha := f.merge(t, source, target, mode, Identity{})
			wantParents := string(target)
			if mode == MergeModeMerge {
				wantParents += " " + string(source)
			}
			if got := f.git.Git(t, "show", "-s", "--format=%P", string(sha)); got != wantParents {
				t.Errorf("parents = %q, want %q", got, wantParents)
			}
			if got := f.git.Git(t, "show", "-s", "--format=%an <%ae> %ad|%cn <%ce> %cd", "--date=raw", string(sha)); got !=
				"refkeeper <refkeeper@localhost> 1767225601 +0000|refkeeper <refkeeper@localhost> 1767225601 +0000" {
				t.Errorf("identity and dates = %q", got)
			}
			if got := f.git.ReadFileAt(t, string(sha), "app.txt"); got != "line 1 main\nline 2\nline 3 feature\n" {
				t.Errorf("merged app.txt = %q", got)
			}
			if got := f.git.Git(t, "cat-file", "-p", string(sha)); !strings.HasSuffix(got, "\n\nMerge "+string(source)+" into "+string(target)) {
				t.Errorf("commit = %q, want the message Merge <source> into <target>", got)
			}
			if err := f.repo.IsCommit(sha); err != nil {
				t.Errorf("the merge commit is not readable through the repository: %v", err)
			}
			// Computing it again, also through another Root over the same
			// directory (another replica), gives the same commit.
			other := &Root{Dir: f.root.Dir}
			defer other.Close()
			repo, err := other.Open("group/app")
			if err != nil {
				t.Fatal(err)
			}
			again, err := repo.Merge(context.Background(), MergeSpec{Source: source, Target: target, Mode: mode})
			if err != nil || again != sha {
				t.Errorf("second Merge = %s, %v; want %s", again, err, sha)
			}
		})
	}
}

func TestMergeLaterCommitterDatePlusOneSecond(t *testing.T) {
	f := newMergeFixture(t)
	f.git.Commit(t, "feature", map[string]string{"new.txt": "new\n"}, "feature")
	// A target committed later than the fixture's fixed date.
	tree := f.git.Git(t, "rev-parse", "main^{tree}")
	later := runGitEnv(t, f.git.Dir, []string{"GIT_COMMITTER_DATE=@1900000000 +0200"}, "commit-tree", tree, "-p", "main", "-m", "later")
	f.git.Git(t, "update-ref", "refs/heads/main", strings.TrimSpace(later))
	sha := f.merge(t, f.head(t, "feature"), f.head(t, "main"), MergeModeMerge, Identity{})
	if got := f.git.Git(t, "show", "-s", "--format=%cd", "--date=raw", string(sha)); got != "1900000001 +0000" {
		t.Errorf("committer date = %q, want one second after the later one, in UTC", got)
	}
}

func TestMergeWithOwnIdentity(t *testing.T) {
	f := newMergeFixture(t)
	f.git.Commit(t, "feature", map[string]string{"new.txt": "new\n"}, "feature")
	id, err := ParseIdentity("CI Bot <ci@example.org>")
	if err != nil {
		t.Fatal(err)
	}
	withOwn := f.merge(t, f.head(t, "feature"), f.head(t, "main"), MergeModeMerge, id)
	withDefault := f.merge(t, f.head(t, "feature"), f.head(t, "main"), MergeModeMerge, Identity{})
	if withOwn == withDefault {
		t.Error("the identity did not change the commit")
	}
}

func TestMergeConflictReportsPathsAndWritesNothing(t *testing.T) {
	f := newMergeFixture(t)
	f.git.Commit(t, "main", map[string]string{"app.txt": "main\n", "lib/util.txt": "main util\n", "same.txt": "same\n"}, "main")
	f.git.Commit(t, "feature", map[string]string{"app.txt": "feature\n", "lib/util.txt": "feature util\n", "same.txt": "same\n"}, "feature")
	before := f.objects(t)
	_, err := f.repo.Merge(context.Background(), MergeSpec{Source: f.head(t, "feature"), Target: f.head(t, "main"), Mode: MergeModeMerge})
	var conflict *MergeConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Merge = %v, want MergeConflictError", err)
	}
	if want := []string{"app.txt", "lib/util.txt"}; !slices.Equal(conflict.Paths, want) {
		t.Errorf("conflicting paths = %q, want %q", conflict.Paths, want)
	}
	if after := f.objects(t); !slices.Equal(before, after) {
		t.Errorf("a conflicting merge wrote objects: %d before, %d after", len(before), len(after))
	}
	assertNoQuarantine(t, f.git.Dir)
}

func TestMergeCarriesChangesAcrossRenames(t *testing.T) {
	f := newMergeFixture(t)
	// feature moves app.txt and the lib directory; main edits app.txt.
	// git's merge carries the edit over the rename.
	f.git.CommitChanges(t, "feature", map[string]string{
		"src/app.txt": "line 1\nline 2\nline 3\n", "pkg/util.txt": "util\n",
	}, []string{"app.txt", "lib/util.txt"}, "feature renames")
	f.git.Commit(t, "main", map[string]string{"app.txt": "line 1\nline 2 main\nline 3\n"}, "main edits")
	for _, mode := range []MergeMode{MergeModeMerge, MergeModeSquash} {
		sha := f.merge(t, f.head(t, "feature"), f.head(t, "main"), mode, Identity{})
		if got := f.git.ReadFileAt(t, string(sha), "src/app.txt"); got != "line 1\nline 2 main\nline 3\n" {
			t.Errorf("%s: src/app.txt = %q, want main's edit carried over the rename", mode, got)
		}
		if _, err := f.git.GitErr("cat-file", "-e", string(sha)+":app.txt"); err == nil {
			t.Errorf("%s: app.txt is still there after its rename", mode)
		}
	}
	// A file main adds to the directory feature moved: git's merge-tree
	// moves it along but calls it a conflict (merge.directoryRenames'
	// default), and so does the computed merge.
	f.git.Commit(t, "main", map[string]string{"lib/extra.txt": "extra\n"}, "main adds to lib")
	_, err := f.repo.Merge(context.Background(), MergeSpec{Source: f.head(t, "feature"), Target: f.head(t, "main"), Mode: MergeModeMerge})
	var conflict *MergeConflictError
	if !errors.As(err, &conflict) || !slices.Equal(conflict.Paths, []string{"pkg/extra.txt"}) {
		t.Errorf("Merge after a directory rename = %v, want a conflict in pkg/extra.txt", err)
	}
	if _, gitErr := f.git.GitErr("merge-tree", "--write-tree", string(f.head(t, "main")), string(f.head(t, "feature"))); gitErr == nil {
		t.Error("git merge-tree merged it cleanly, the computed merge did not")
	}
}

func TestMergeWhenOneSideContainsTheOther(t *testing.T) {
	f := newMergeFixture(t)
	base := f.head(t, "main")
	ahead := f.git.Commit(t, "feature", map[string]string{"new.txt": "new\n"}, "feature")
	cases := []struct {
		name           string
		source, target ObjectID
		tree           ObjectID
	}{
		{"source ahead of target", ObjectID(ahead), base, ObjectID(ahead)},
		{"source already in target", base, ObjectID(ahead), ObjectID(ahead)},
		{"source is target", base, base, base},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sha := f.merge(t, c.source, c.target, MergeModeMerge, Identity{})
			// Always a merge commit, never a fast-forward (a commit merged
			// into itself has it once, as git commit-tree writes it).
			want := string(c.target) + " " + string(c.source)
			if c.source == c.target {
				want = string(c.target)
			}
			if got := f.git.Git(t, "show", "-s", "--format=%P", string(sha)); got != want {
				t.Errorf("parents = %q, want %q", got, want)
			}
			if got, want := f.git.TreeOf(t, string(sha)), f.git.TreeOf(t, string(c.tree)); got != want {
				t.Errorf("tree = %s, want %s", got, want)
			}
			f.merge(t, c.source, c.target, MergeModeSquash, Identity{})
		})
	}
}

func TestMergeUnrelatedHistories(t *testing.T) {
	f := newMergeFixture(t)
	tree := f.git.Git(t, "rev-parse", "main^{tree}")
	orphan := f.git.Git(t, "commit-tree", tree, "-m", "orphan")
	before := f.objects(t)
	_, err := f.repo.Merge(context.Background(), MergeSpec{Source: ObjectID(orphan), Target: f.head(t, "main"), Mode: MergeModeMerge})
	var unrelated *UnrelatedHistoriesError
	if !errors.As(err, &unrelated) {
		t.Fatalf("Merge = %v, want UnrelatedHistoriesError", err)
	}
	if after := f.objects(t); !slices.Equal(before, after) {
		t.Error("a refused merge wrote objects")
	}
}

func TestMergeMissingInputs(t *testing.T) {
	f := newMergeFixture(t)
	main := f.head(t, "main")
	tree := ObjectID(f.git.Git(t, "rev-parse", "main^{tree}"))
	missing := ObjectID(strings.Repeat("ab", 20))
	var nf *ObjectNotFoundError
	if _, err := f.repo.Merge(context.Background(), MergeSpec{Source: missing, Target: main, Mode: MergeModeMerge}); !errors.As(err, &nf) {
		t.Errorf("missing source: %v, want ObjectNotFoundError", err)
	}
	var nc *NotCommitError
	if _, err := f.repo.Merge(context.Background(), MergeSpec{Source: main, Target: tree, Mode: MergeModeMerge}); !errors.As(err, &nc) {
		t.Errorf("tree as target: %v, want NotCommitError", err)
	}
	var invalid *InvalidNameError
	if _, err := f.repo.Merge(context.Background(), MergeSpec{Source: main, Target: main, Mode: "rebase"}); !errors.As(err, &invalid) {
		t.Errorf("mode rebase: %v, want InvalidNameError", err)
	}
}

func TestMergeEndsWithItsContext(t *testing.T) {
	f := newMergeFixture(t)
	f.git.Commit(t, "feature", map[string]string{"new.txt": "new\n"}, "feature")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := f.objects(t)
	if _, err := f.repo.Merge(ctx, MergeSpec{Source: f.head(t, "feature"), Target: f.head(t, "main"), Mode: MergeModeMerge}); err == nil {
		t.Fatal("Merge with an ended context succeeded")
	}
	if after := f.objects(t); !slices.Equal(before, after) {
		t.Error("a cancelled merge wrote objects")
	}
	assertNoQuarantine(t, f.git.Dir)
}

func TestResolveCommitPeelsTags(t *testing.T) {
	f := newMergeFixture(t)
	main := f.head(t, "main")
	f.git.AnnotatedTag(t, "v1", string(main))
	for _, ref := range []RefName{"refs/heads/main", "refs/tags/v1"} {
		if got, err := f.repo.ResolveCommit(ref); err != nil || got != main {
			t.Errorf("ResolveCommit(%s) = %s, %v; want %s", ref, got, err, main)
		}
	}
	var nf *RefNotFoundError
	if _, err := f.repo.ResolveCommit("refs/heads/nope"); !errors.As(err, &nf) {
		t.Errorf("missing ref: %v, want RefNotFoundError", err)
	}
	f.git.Git(t, "update-ref", "refs/other/tree", f.git.Git(t, "rev-parse", "main^{tree}"))
	var nc *NotCommitError
	if _, err := f.repo.ResolveCommit("refs/other/tree"); !errors.As(err, &nc) {
		t.Errorf("ref at a tree: %v, want NotCommitError", err)
	}
}

func TestParseIdentity(t *testing.T) {
	good := map[string]Identity{
		"refkeeper <refkeeper@localhost>": DefaultIdentity,
		"CI Bot <ci@example.org>":         {Name: "CI Bot", Email: "ci@example.org"},
	}
	for in, want := range good {
		if got, err := ParseIdentity(in); err != nil || got != want {
			t.Errorf("ParseIdentity(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "refkeeper", "<a@b>", "x <>", "x <a@b", "x <a<b>", "x. <a@b>", " x <a@b>",
		"x <a@b.>", "x\ny <a@b>", "x <a@b> y", "x  <a@b>"} {
		if got, err := ParseIdentity(in); err == nil {
			t.Errorf("ParseIdentity(%q) = %+v, want an error", in, got)
		}
	}
}

func TestParseRevision(t *testing.T) {
	sha := strings.Repeat("Ab", 20)
	cases := map[string]Revision{
		sha:                           {ID: ObjectID(strings.ToLower(sha))},
		"main":                        {Ref: "refs/heads/main"},
		"feature/x":                   {Ref: "refs/heads/feature/x"},
		"refs/merge-requests/12/head": {Ref: "refs/merge-requests/12/head"},
		"refs/tags/v1":                {Ref: "refs/tags/v1"},
	}
	for in, want := range cases {
		if got, err := ParseRevision(in); err != nil || got != want {
			t.Errorf("ParseRevision(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a..b", "refs/heads/../x", "x.lock", "x y", "x~1", "-x:y", "refs/", "/main", "main/"} {
		if got, err := ParseRevision(in); err == nil {
			t.Errorf("ParseRevision(%q) = %+v, want an error", in, got)
		}
	}
}

func assertNoQuarantine(t *testing.T, dir string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(dir, "objects", "tmp_objdir*"))
	if len(left) > 0 {
		t.Errorf("temporary object directories left behind: %v", left)
	}
}

// runGitEnv runs git on a bare repository with extra environment.
func runGitEnv(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	root := &Root{}
	cmd := root.command(context.Background(), dir, args...)
	cmd.Env = append(cmd.Env, "GIT_AUTHOR_NAME=x", "GIT_AUTHOR_EMAIL=x@y", "GIT_COMMITTER_NAME=x", "GIT_COMMITTER_EMAIL=x@y")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}

// The demo project is a local project of host kind gitlab: its merge
// request has a head ref, so a computed merge may leave the source out.
func TestCreateDemoHasMergeRequestHead(t *testing.T) {
	testdata.GitAvailable(t)
	root := &Root{Dir: t.TempDir()}
	defer root.Close()
	if _, err := root.CreateDemo("demo/app"); err != nil {
		t.Fatal(err)
	}
	g := &testdata.Repo{Dir: filepath.Join(root.Dir, "demo", "app.git")}
	head, ok := g.RefSHA(t, string(MergeRequestHeadRef(DemoMergeRequestIID)))
	feature, _ := g.RefSHA(t, "refs/heads/feature")
	if !ok || head != feature {
		t.Fatalf("refs/merge-requests/1/head = %q, %v; want the feature branch %s", head, ok, feature)
	}
}
