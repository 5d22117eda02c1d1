package testdata

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Fixed identity and time so that the same inputs give the same commit SHA
// in every repository and on every run.
const (
	AuthorName  = "Test Author"
	AuthorEmail = "test@example.com"
	CommitDate  = "2026-01-01T00:00:00Z"
)

// Repo is a bare repository built with the real git CLI for a test.
type Repo struct {
	Dir string // path of the bare repository

	home string // HOME for git, so the user's config does not leak in
}

// GitAvailable fails the test when git is not on PATH.
func GitAvailable(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Fatalf("testdata: git is not on PATH (install git to run this test): %v", err)
	}
}

// NewBareRepo creates the bare repository <root>/<name>.git, creating
// missing parent directories, with main as its default branch.
func NewBareRepo(tb testing.TB, root, name string) *Repo {
	tb.Helper()
	GitAvailable(tb)
	r := &Repo{Dir: filepath.Join(root, name+".git"), home: tb.TempDir()}
	if err := os.MkdirAll(root, 0o755); err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	if _, err := runGit(r.home, nil, nil, "init", "-q", "--bare", "--initial-branch=main", r.Dir); err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return r
}

// Git runs git on the repository and returns its trimmed stdout. It fails
// the test, showing stderr, if git fails.
func (r *Repo) Git(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := r.GitErr(args...)
	if err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return out
}

// GitErr is Git for callers that expect failure: it returns the error, which
// includes git's stderr, instead of failing the test.
func (r *Repo) GitErr(args ...string) (string, error) {
	out, err := r.run(nil, nil, args...)
	return strings.TrimSpace(out), err
}

// Commit makes a commit on refs/heads/<branch> whose tree is the branch's
// current tree plus files (path -> content; paths may contain slashes) and
// returns its SHA. The branch is created if missing. A throwaway index
// stands in for the work tree a bare repository does not have.
func (r *Repo) Commit(tb testing.TB, branch string, files map[string]string, msg string) string {
	tb.Helper()
	ref := "refs/heads/" + branch
	parent, hasParent := r.RefSHA(tb, ref)
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(tb.TempDir(), "index")}

	if hasParent {
		r.mustRun(tb, nil, env, "read-tree", parent)
	}
	// Sorted so failures are reproducible; the index sorts entries itself.
	for _, path := range slices.Sorted(maps.Keys(files)) {
		blob := r.mustRun(tb, strings.NewReader(files[path]), nil, "hash-object", "-w", "--stdin")
		r.mustRun(tb, nil, env, "update-index", "--add", "--cacheinfo", "100644,"+blob+","+path)
	}
	tree := r.mustRun(tb, nil, env, "write-tree")

	args := []string{"commit-tree", tree, "-m", msg}
	old := zeroOID(tree) // update-ref: the branch must not exist yet
	if hasParent {
		args = append(args, "-p", parent)
		old = parent // update-ref: nobody moved the branch meanwhile
	}
	sha := r.mustRun(tb, nil, nil, args...)
	r.mustRun(tb, nil, nil, "update-ref", ref, sha, old)
	return sha
}

// Merge creates a merge commit of the heads of branches target and source,
// with parents (target, source), and returns its SHA. No ref is moved. It
// fails the test on conflicts.
func (r *Repo) Merge(tb testing.TB, target, source, msg string) string {
	tb.Helper()
	t := r.branchHead(tb, target)
	s := r.branchHead(tb, source)
	// Needs git >= 2.38. Output: the tree on the first line, then conflict
	// details, which are worth showing when the merge fails.
	out, err := r.run(nil, nil, "merge-tree", "--write-tree", t, s)
	if err != nil {
		tb.Fatalf("testdata: merge %s into %s (needs git >= 2.38 for merge-tree --write-tree): %v\n%s", source, target, err, out)
	}
	tree, _, _ := strings.Cut(out, "\n")
	return r.mustRun(tb, nil, nil, "commit-tree", strings.TrimSpace(tree), "-p", t, "-p", s, "-m", msg)
}

// SetMergeRequestRef points refs/merge-requests/<iid>/merge at a new merge
// of source into target, as a forge does, and returns the merge's SHA.
func (r *Repo) SetMergeRequestRef(tb testing.TB, iid int64, target, source string) string {
	tb.Helper()
	sha := r.Merge(tb, target, source, fmt.Sprintf("Merge branch '%s' into '%s'", source, target))
	r.mustRun(tb, nil, nil, "update-ref", "refs/merge-requests/"+strconv.FormatInt(iid, 10)+"/merge", sha)
	return sha
}

// RefSHA returns the object the full ref name points at, without peeling
// tags; ok is false when the ref does not exist.
func (r *Repo) RefSHA(tb testing.TB, ref string) (sha string, ok bool) {
	tb.Helper()
	// for-each-ref also matches refs below ref/, hence the exact comparison.
	out := r.mustRun(tb, nil, nil, "for-each-ref", "--format=%(objectname) %(refname)", ref)
	for line := range strings.Lines(out) {
		sha, name, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name == ref {
			return sha, true
		}
	}
	return "", false
}

// Refs returns every ref whose full name starts with prefix (for example
// "refs/pipelines/"), mapped to the object it points at.
func (r *Repo) Refs(tb testing.TB, prefix string) map[string]string {
	tb.Helper()
	args := []string{"for-each-ref", "--format=%(objectname) %(refname)"}
	// for-each-ref matches whole path components only, so let it narrow
	// down to the last complete component and filter the rest here.
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		args = append(args, prefix[:i+1])
	}
	refs := make(map[string]string)
	for line := range strings.Lines(r.mustRun(tb, nil, nil, args...)) {
		sha, name, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, prefix) {
			refs[name] = sha
		}
	}
	return refs
}

// TreeOf returns the SHA of commit's tree.
func (r *Repo) TreeOf(tb testing.TB, commit string) string {
	tb.Helper()
	return r.mustRun(tb, nil, nil, "rev-parse", "--verify", commit+"^{tree}")
}

// BlobOf returns the SHA of the blob at path in commit.
func (r *Repo) BlobOf(tb testing.TB, commit, path string) string {
	tb.Helper()
	sha := r.mustRun(tb, nil, nil, "rev-parse", "--verify", commit+":"+path)
	// A directory's path names a tree, which callers would not expect.
	if typ := r.mustRun(tb, nil, nil, "cat-file", "-t", sha); typ != "blob" {
		tb.Fatalf("testdata: %s:%s is a %s, not a blob", commit, path, typ)
	}
	return sha
}

// AnnotatedTag creates refs/tags/<name> as an annotated tag of commit and
// returns the SHA of the tag object, not of the commit.
func (r *Repo) AnnotatedTag(tb testing.TB, name, commit string) string {
	tb.Helper()
	r.mustRun(tb, nil, nil, "tag", "-a", "-m", name, name, commit)
	return r.mustRun(tb, nil, nil, "rev-parse", "--verify", "refs/tags/"+name)
}

// CreateRefs creates all refs (full name -> SHA) in one transaction: either
// all are created or, if any already exists, none is.
func (r *Repo) CreateRefs(tb testing.TB, refs map[string]string) {
	tb.Helper()
	var in strings.Builder
	for _, ref := range slices.Sorted(maps.Keys(refs)) {
		fmt.Fprintf(&in, "create %s %s\n", ref, refs[ref])
	}
	r.mustRun(tb, strings.NewReader(in.String()), nil, "update-ref", "--stdin")
}

// PipelineRefs creates refs/pipelines/<from> .. refs/pipelines/<from+n-1>
// at sha in one transaction. The input is generated while git reads it, so
// large n costs no memory here.
func (r *Repo) PipelineRefs(tb testing.TB, from, n int64, sha string) {
	tb.Helper()
	if n <= 0 {
		return
	}
	in := &pipelineRefLines{next: from, end: from + n, sha: sha}
	r.mustRun(tb, in, nil, "update-ref", "--stdin")
}

// PackRefs moves all refs into packed-refs, as gc would.
func (r *Repo) PackRefs(tb testing.TB) {
	tb.Helper()
	r.mustRun(tb, nil, nil, "pack-refs", "--all", "--prune")
}

// ReadFileAt returns the content of path in commit, byte for byte (unlike
// Git, it does not trim whitespace).
func (r *Repo) ReadFileAt(tb testing.TB, commit, path string) string {
	tb.Helper()
	out, err := r.run(nil, nil, "show", commit+":"+path)
	if err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return out
}

// branchHead returns the commit refs/heads/<branch> points at, failing the
// test if there is no such branch.
func (r *Repo) branchHead(tb testing.TB, branch string) string {
	tb.Helper()
	sha, ok := r.RefSHA(tb, "refs/heads/"+branch)
	if !ok {
		tb.Fatalf("testdata: branch %q does not exist in %s", branch, r.Dir)
	}
	return sha
}

// mustRun runs git on the repository with extra environment and returns its
// trimmed stdout, failing the test on error.
func (r *Repo) mustRun(tb testing.TB, stdin io.Reader, env []string, args ...string) string {
	tb.Helper()
	out, err := r.run(stdin, env, args...)
	if err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return strings.TrimSpace(out)
}

// run runs git on the repository and returns its untrimmed stdout.
func (r *Repo) run(stdin io.Reader, env []string, args ...string) (string, error) {
	return runGit(r.home, stdin, env, append([]string{"--git-dir", r.Dir}, args...)...)
}

// runGit runs git in a controlled environment: fixed identity and dates,
// no system or user config, and none of the caller's GIT_* variables (a
// GIT_DIR or GIT_INDEX_FILE from a surrounding hook would redirect it). The
// error includes stderr.
func runGit(home string, stdin io.Reader, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "GIT_EXEC_PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"GIT_AUTHOR_NAME="+AuthorName,
		"GIT_AUTHOR_EMAIL="+AuthorEmail,
		"GIT_AUTHOR_DATE="+CommitDate,
		"GIT_COMMITTER_NAME="+AuthorName,
		"GIT_COMMITTER_EMAIL="+AuthorEmail,
		"GIT_COMMITTER_DATE="+CommitDate,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull, // belt and braces with HOME
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C", // stable, English messages in errors
	)
	if home != "" {
		cmd.Env = append(cmd.Env, "HOME="+home, "XDG_CONFIG_HOME="+home)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// zeroOID is the all-zero object name of the same length as oid, which
// update-ref takes as "must not exist yet".
func zeroOID(oid string) string {
	return strings.Repeat("0", len(oid))
}

// pipelineRefLines is an io.Reader producing update-ref --stdin lines
// "create refs/pipelines/<id> <sha>" for ids in [next, end), one at a time.
type pipelineRefLines struct {
	next, end int64
	sha       string
	line      []byte // the current line
	pending   []byte // the part of line not read yet
}

func (p *pipelineRefLines) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if len(p.pending) == 0 {
			if p.next >= p.end {
				break
			}
			p.line = fmt.Appendf(p.line[:0], "create refs/pipelines/%d %s\n", p.next, p.sha)
			p.pending = p.line
			p.next++
		}
		c := copy(b[n:], p.pending)
		p.pending = p.pending[c:]
		n += c
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// MergeRequestProject is the fixture most tests start from: group/app with
// a main branch (First, then Second), a feature branch off First, and
// refs/merge-requests/12/merge at the merge of the two (Merge).
type MergeRequestProject struct {
	*Repo
	First, Second, Merge string
}

// MergeRequestIID is the merge request of MergeRequestProject.
const MergeRequestIID = 12

// NewMergeRequestProject builds MergeRequestProject under root.
func NewMergeRequestProject(tb testing.TB, root string) *MergeRequestProject {
	tb.Helper()
	GitAvailable(tb)
	g := NewBareRepo(tb, root, "group/app")
	first := g.Commit(tb, "main", map[string]string{"app.txt": "v1\n"}, "first")
	g.Git(tb, "branch", "feature", first)
	g.Commit(tb, "feature", map[string]string{"feature.txt": "new\n"}, "feature")
	second := g.Commit(tb, "main", map[string]string{"app.txt": "v2\n"}, "second")
	merge := g.SetMergeRequestRef(tb, MergeRequestIID, "main", "feature")
	return &MergeRequestProject{Repo: g, First: first, Second: second, Merge: merge}
}
