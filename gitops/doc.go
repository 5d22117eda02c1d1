// Package gitops is the only package that touches git.
//
// It opens bare repositories under one root directory by validated project
// name (never outside the root, also not through a symlink), checks objects,
// lists pipeline refs and writes them. Every write goes through git's own ref
// transactions (`git update-ref --stdin`), which take git's lock files and
// compare the old value under the lock, so writes are atomic across
// goroutines and processes: a create is create-if-absent, a delete is
// compare-and-delete, and a batch delete rewrites packed-refs once. Reads use
// libgit2 (git2go), with one repository handle per goroutine at a time.
//
// It also computes merges (merge.go): git merge-tree's tree, made in a
// temporary object directory that joins the repository only when the merge
// is clean, and a commit written straight to the object store with a fixed
// identity and date, so the same inputs give the same commit everywhere.
// git runs through one function (command.go) with a minimal environment.
//
// gitops writes only refs under refs/pipelines/; every write checks that.
//
// Only package refs imports gitops; git2go appears nowhere else, so it can be
// replaced here alone.
package gitops
