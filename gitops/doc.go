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
// gitops writes only refs under refs/pipelines/; every write checks that.
// The one exception is a mirror's own refs (its branches and its host's
// merge request refs), which only `git fetch` from its upstream writes, and
// whose refspecs are checked never to point into refs/pipelines/. Mirrors
// (mirror.go) are made in a staging area (<root>/.mirrors, a dot-name no
// listing shows) and renamed into place after their first fetch; their git
// config records upstream, host kind and credential name. Fetches
// (fetch.go) run protocol v2 with no tags, hand credentials to git through
// an inherited pipe read by a credential helper, classify failures
// (unavailable, rejected, ref missing), and are shared by concurrent
// callers (Fetcher; across processes too, given a FetchLease). They start git through Root.command (command.go): an
// allow-listed environment, hooks off, the process group ended on cancel.
//
// Only package refs imports gitops; git2go appears nowhere else, so it can be
// replaced here alone.
package gitops
