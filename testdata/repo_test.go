package testdata

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func checkSHA(tb testing.TB, what, sha string) {
	tb.Helper()
	if !shaRE.MatchString(sha) {
		tb.Fatalf("%s = %q, want 40 hex digits", what, sha)
	}
}

func TestNewBareRepo(t *testing.T) {
	root := filepath.Join(t.TempDir(), "group", "sub")
	r := NewBareRepo(t, root, "project")
	if want := filepath.Join(root, "project.git"); r.Dir != want {
		t.Fatalf("Dir = %q, want %q", r.Dir, want)
	}
	if got := r.Git(t, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Fatalf("is-bare-repository = %q", got)
	}
	if got := r.Git(t, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Fatalf("HEAD = %q, want refs/heads/main", got)
	}
	if _, err := r.GitErr("rev-parse", "--verify", "refs/heads/nope"); err == nil {
		t.Fatal("GitErr on a missing ref returned no error")
	}
}

func TestCommitAndMergeRequestRef(t *testing.T) {
	r := NewBareRepo(t, t.TempDir(), "repo")
	base := r.Commit(t, "main", map[string]string{"README.md": "hello\n"}, "initial")
	checkSHA(t, "base", base)
	if got := r.Git(t, "rev-list", "--count", base); got != "1" {
		t.Fatalf("root commit has history of %s commits", got)
	}

	// Branch feature from main with update-ref, then diverge on different files.
	r.Git(t, "update-ref", "refs/heads/feature", base)
	mainHead := r.Commit(t, "main", map[string]string{"main.txt": "on main\n"}, "main work")
	featHead := r.Commit(t, "feature", map[string]string{"dir/sub/feature.txt": "on feature\n"}, "feature work")
	if got := r.Git(t, "rev-parse", mainHead+"^"); got != base {
		t.Fatalf("parent of main head = %s, want %s", got, base)
	}
	if got := r.ReadFileAt(t, mainHead, "README.md"); got != "hello\n" {
		t.Fatalf("README.md on main = %q, want the parent's content kept", got)
	}

	merge := r.SetMergeRequestRef(t, 42, "main", "feature")
	checkSHA(t, "merge", merge)
	if got, ok := r.RefSHA(t, "refs/merge-requests/42/merge"); !ok || got != merge {
		t.Fatalf("refs/merge-requests/42/merge = %q, %v; want %s", got, ok, merge)
	}
	if got, want := r.Git(t, "rev-list", "--parents", "-n1", merge), merge+" "+mainHead+" "+featHead; got != want {
		t.Fatalf("merge parents: got %q, want %q", got, want)
	}
	files := r.Git(t, "ls-tree", "-r", "--name-only", merge)
	if want := "README.md\ndir/sub/feature.txt\nmain.txt"; files != want {
		t.Fatalf("merge tree files:\n%s\nwant:\n%s", files, want)
	}
	if got := r.ReadFileAt(t, merge, "dir/sub/feature.txt"); got != "on feature\n" {
		t.Fatalf("feature.txt in merge = %q", got)
	}
	// Merge must not move branches.
	if got, _ := r.RefSHA(t, "refs/heads/main"); got != mainHead {
		t.Fatalf("main moved to %s", got)
	}
	if got, _ := r.RefSHA(t, "refs/heads/feature"); got != featHead {
		t.Fatalf("feature moved to %s", got)
	}
}

func TestCommitIsReproducible(t *testing.T) {
	build := func(name string) (string, string) {
		r := NewBareRepo(t, t.TempDir(), name)
		r.Commit(t, "main", map[string]string{"a.txt": "a\n", "b/c.txt": "c\n"}, "first")
		head := r.Commit(t, "main", map[string]string{"a.txt": "a2\n"}, "second")
		r.Git(t, "update-ref", "refs/heads/other", head)
		r.Commit(t, "other", map[string]string{"o.txt": "o\n"}, "other")
		return head, r.Merge(t, "main", "other", "merge")
	}
	head1, merge1 := build("one")
	head2, merge2 := build("two")
	if head1 != head2 {
		t.Fatalf("same commits, different SHAs: %s vs %s", head1, head2)
	}
	if merge1 != merge2 {
		t.Fatalf("same merges, different SHAs: %s vs %s", merge1, merge2)
	}
}

func TestMergeConflictFails(t *testing.T) {
	r := NewBareRepo(t, t.TempDir(), "repo")
	base := r.Commit(t, "main", map[string]string{"f": "base\n"}, "base")
	r.Git(t, "update-ref", "refs/heads/feature", base)
	r.Commit(t, "main", map[string]string{"f": "main\n"}, "main")
	r.Commit(t, "feature", map[string]string{"f": "feature\n"}, "feature")

	msg := fatalMessage(t, func(tb testing.TB) { r.Merge(tb, "main", "feature", "merge") })
	if !strings.Contains(msg, "CONFLICT") {
		t.Fatalf("Merge of conflicting branches: got failure %q, want one mentioning CONFLICT", msg)
	}
}

// fatalMessage runs fn with a testing.TB whose Fatalf records the message
// and stops fn, without failing t, so that a helper's failure path can be
// checked. It returns "" if fn did not call Fatalf.
func fatalMessage(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	// Its own goroutine, because Fatalf ends it with runtime.Goexit just
	// as testing does.
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.msg
}

type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRefs(t *testing.T) {
	r := NewBareRepo(t, t.TempDir(), "repo")
	sha := r.Commit(t, "main", map[string]string{"f": "x\n"}, "c")

	if got, ok := r.RefSHA(t, "refs/pipelines/1"); ok {
		t.Fatalf("RefSHA of a missing ref = %q, true", got)
	}
	r.CreateRefs(t, map[string]string{"refs/pipelines/1/x": sha, "refs/pipelines/10": sha})
	// refs/pipelines/1 is a prefix of both but is not itself a ref.
	if got, ok := r.RefSHA(t, "refs/pipelines/1"); ok {
		t.Fatalf("RefSHA matched a longer ref: %q", got)
	}
	if got, ok := r.RefSHA(t, "refs/pipelines/10"); !ok || got != sha {
		t.Fatalf("RefSHA = %q, %v; want %s", got, ok, sha)
	}
	if got := len(r.Refs(t, "refs/pipelines/1")); got != 2 {
		t.Fatalf("Refs with a partial prefix: %d refs, want 2", got)
	}
	if _, err := r.GitErr("update-ref", "-d", "refs/pipelines/1/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GitErr("update-ref", "-d", "refs/pipelines/10"); err != nil {
		t.Fatal(err)
	}

	r.PipelineRefs(t, 1, 1000, sha)
	refs := r.Refs(t, "refs/pipelines/")
	if len(refs) != 1000 {
		t.Fatalf("Refs: %d refs, want 1000", len(refs))
	}
	for _, name := range []string{"refs/pipelines/1", "refs/pipelines/1000"} {
		if refs[name] != sha {
			t.Fatalf("%s = %q, want %s", name, refs[name], sha)
		}
	}
	if _, ok := refs["refs/pipelines/1001"]; ok {
		t.Fatal("refs/pipelines/1001 exists, want n refs starting at from")
	}
	if got, ok := r.RefSHA(t, "refs/pipelines/500"); !ok || got != sha {
		t.Fatalf("RefSHA(refs/pipelines/500) = %q, %v", got, ok)
	}

	r.PackRefs(t)
	if got := len(r.Refs(t, "refs/pipelines/")); got != 1000 {
		t.Fatalf("after PackRefs: %d refs, want 1000", got)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "packed-refs")); err != nil {
		t.Fatalf("packed-refs after PackRefs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "refs", "pipelines", "1")); !os.IsNotExist(err) {
		t.Fatalf("loose ref left after PackRefs --prune: %v", err)
	}
	if got, ok := r.RefSHA(t, "refs/pipelines/1"); !ok || got != sha {
		t.Fatalf("RefSHA of a packed ref = %q, %v", got, ok)
	}
}

func TestCreateRefsIsOneTransaction(t *testing.T) {
	r := NewBareRepo(t, t.TempDir(), "repo")
	sha := r.Commit(t, "main", map[string]string{"f": "x\n"}, "c")
	r.CreateRefs(t, map[string]string{"refs/pipelines/2": sha})

	// "create" of an existing ref fails, so the whole batch must be rejected.
	msg := fatalMessage(t, func(tb testing.TB) {
		r.CreateRefs(tb, map[string]string{"refs/pipelines/1": sha, "refs/pipelines/2": sha})
	})
	if msg == "" {
		t.Fatal("CreateRefs over an existing ref did not fail")
	}
	if got, ok := r.RefSHA(t, "refs/pipelines/1"); ok {
		t.Fatalf("refs/pipelines/1 = %s after a failed transaction", got)
	}
}

func TestObjectHelpers(t *testing.T) {
	r := NewBareRepo(t, t.TempDir(), "repo")
	commit := r.Commit(t, "main", map[string]string{"a/b.txt": "b\n", "top": "  spaced \n\n"}, "c")

	tag := r.AnnotatedTag(t, "v1", commit)
	checkSHA(t, "tag", tag)
	if tag == commit {
		t.Fatal("AnnotatedTag returned the commit, want the tag object")
	}
	if got := r.Git(t, "cat-file", "-t", tag); got != "tag" {
		t.Fatalf("type of AnnotatedTag result = %q, want tag", got)
	}
	if got := r.Git(t, "rev-parse", tag+"^{commit}"); got != commit {
		t.Fatalf("tag points at %s, want %s", got, commit)
	}
	if got, _ := r.RefSHA(t, "refs/tags/v1"); got != tag {
		t.Fatalf("RefSHA(refs/tags/v1) = %s, want the unpeeled tag %s", got, tag)
	}

	tree := r.TreeOf(t, commit)
	checkSHA(t, "tree", tree)
	if got := r.Git(t, "cat-file", "-t", tree); got != "tree" {
		t.Fatalf("type of TreeOf = %q, want tree", got)
	}
	blob := r.BlobOf(t, commit, "a/b.txt")
	checkSHA(t, "blob", blob)
	if got := r.Git(t, "cat-file", "-t", blob); got != "blob" {
		t.Fatalf("type of BlobOf = %q, want blob", got)
	}
	if got := r.Git(t, "cat-file", "blob", blob); got != "b" {
		t.Fatalf("BlobOf content = %q", got)
	}
	if got := r.ReadFileAt(t, commit, "top"); got != "  spaced \n\n" {
		t.Fatalf("ReadFileAt = %q, want the content untrimmed", got)
	}
}
