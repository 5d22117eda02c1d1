package testdata

import (
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// DefaultMergeName and DefaultMergeEmail are the service's default identity
// of computed merges.
const (
	DefaultMergeName  = "refkeeper"
	DefaultMergeEmail = "refkeeper@localhost"
)

// CommitChanges is Commit that also removes paths from the branch's tree
// (a rename is a removal plus an addition of the same content).
func (r *Repo) CommitChanges(tb testing.TB, branch string, files map[string]string, remove []string, msg string) string {
	tb.Helper()
	ref := "refs/heads/" + branch
	parent, ok := r.RefSHA(tb, ref)
	if !ok {
		tb.Fatalf("testdata: CommitChanges needs an existing branch %s", branch)
	}
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(tb.TempDir(), "index")}
	r.mustRun(tb, nil, env, "read-tree", parent)
	var gone strings.Builder
	for _, path := range remove {
		gone.WriteString("0 " + zeroOID(parent) + "\t" + path + "\n") // mode 0: remove
	}
	r.mustRun(tb, strings.NewReader(gone.String()), env, "update-index", "--index-info")
	for _, path := range slices.Sorted(maps.Keys(files)) {
		blob := r.mustRun(tb, strings.NewReader(files[path]), nil, "hash-object", "-w", "--stdin")
		r.mustRun(tb, nil, env, "update-index", "--add", "--cacheinfo", "100644,"+blob+","+path)
	}
	tree := r.mustRun(tb, nil, env, "write-tree")
	sha := r.mustRun(tb, nil, nil, "commit-tree", tree, "-p", parent, "-m", msg)
	r.mustRun(tb, nil, nil, "update-ref", ref, sha, parent)
	return sha
}

// RecomputeMerge makes, with the git CLI alone, the commit the contract
// says a computed merge is: the tree of `git merge-tree --write-tree`, then
// `git commit-tree` with parents [target, source] (mode merge) or [target]
// (squash), name and email as author and committer, both dated the later
// committer date of the two plus one second in UTC, and the message
// "Merge <source> into <target>\n". It fails the test on conflicts.
func (r *Repo) RecomputeMerge(tb testing.TB, source, target, mode, name, email string) string {
	tb.Helper()
	out, err := r.run(nil, nil, "merge-tree", "--write-tree", target, source)
	if err != nil {
		tb.Fatalf("testdata: merge-tree %s %s: %v\n%s", target, source, err, out)
	}
	tree, _, _ := strings.Cut(out, "\n")
	var latest int64
	for _, c := range []string{source, target} {
		t, err := strconv.ParseInt(r.mustRun(tb, nil, nil, "show", "-s", "--format=%ct", c), 10, 64)
		if err != nil {
			tb.Fatalf("testdata: committer date of %s: %v", c, err)
		}
		latest = max(latest, t)
	}
	date := "@" + strconv.FormatInt(latest+1, 10) + " +0000"
	env := []string{
		"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + name, "GIT_COMMITTER_EMAIL=" + email, "GIT_COMMITTER_DATE=" + date,
	}
	args := []string{"commit-tree", strings.TrimSpace(tree), "-p", target}
	if mode == "merge" {
		args = append(args, "-p", source)
	}
	args = append(args, "-m", "Merge "+source+" into "+target)
	return r.mustRun(tb, nil, env, args...)
}
