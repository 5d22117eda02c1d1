// Package gitops is the service's one access to its repositories but for
// serving them to runners (package githttp, read-only, through git
// http-backend): every write, every libgit2 read, every upstream fetch.
//
// A Root is the directory of bare repositories. It opens one by validated
// project name (never outside the root, also not through a symlink) and
// lists them. Reads (IsCommit, ResolveRef, PipelineRefs) use libgit2
// (git2go) through a small pool of handles per repository, one goroutine
// per handle at a time.
//
// Every ref write is a transaction of one primitive, Updater: a `git
// update-ref --stdin` process that runs start, create / delete / update with
// the expected old value, prepare, and commit or abort, the old values
// compared under git's locks (its doc comment gives the legal call order).
// The callers are thin:
//
//   - Create: the group commit. A ref already there answers from the ref;
//     absent ones queue, and one drainer per repository writes what is
//     queued, up to 1000 refs a transaction, in a long-lived Updater.
//   - CreateChecked and DeleteBatchChecked: a Check asked between Prepare
//     and Commit, while git holds the refs' locks, is the fence a caller
//     builds on (refs asks Redis whether a deletion claim still stands).
//   - DeleteBatch (one packed-refs rewrite per transaction) and Delete.
//
// Only refs under refs/pipelines/ are written by these; every write checks
// that.
// (CreateDemo, which builds a new demo repository from nothing, is the one
// writer of other refs.)
//
// Every git process gitops starts (writers, `git pack-refs`, merge-tree,
// rev-list, fetches, gc) runs through the one git runner, package gitexec,
// with the Root's settings (Root.command): an environment from an allow
// list (no secret of the service reaches git or a program it starts),
// repository hooks off, its own process group, and an end: when the
// caller's context ends or the Root's GitTimeout passes, SIGTERM (git
// removes its lock files), then SIGKILL after a grace. Housekeeping alone
// has a longer bound of its own (HousekeepingOptions.Timeout,
// --maintenance-timeout).
// Calls that run git or wait take a context: a caller whose context ends
// stops waiting (for a lock, for its turn in the group commit), while a
// transaction git has begun runs to its end, since one cut short in its
// commit would leave some refs written and others not.
//
// Merges are computed here too (merge.go): git merge-tree's tree, made in a
// temporary object directory that joins the repository only when the merge
// is clean, and a commit written straight to the object store with a fixed
// identity and date, so the same inputs give the same commit everywhere.
//
// Mirrors (mirror.go) are the other repositories gitops writes to: made in
// a staging area (<root>/.mirrors, a dot-name no listing shows) and renamed
// into place after their first fetch, their git config recording upstream,
// host kind and credential name. Only `git fetch` from the upstream writes
// their own refs (branches, the host's merge request refs); every refspec is
// checked never to point into refs/pipelines/. Fetches (fetch.go) run
// protocol v2 with no tags, hand credentials to git through an inherited
// pipe read by a credential helper, classify failures (unavailable,
// rejected, ref missing), and are shared by concurrent callers (Fetcher;
// across processes too, given a FetchLease, lease.go). A shared fetch that
// meets a SHA the upstream lacks asks the upstream once which of the others
// it has (probe.go: a protocol v2 request of "have" lines through git's own
// remote helper) instead of retrying one SHA at a time; a SHA the upstream
// lacks is answered so without asking again for Fetcher.MissingFor (5 s),
// per process and directory, until a fetch brings it or ForgetMissing (a
// mirror's PUT or DELETE). An upstream that refused a fetch or probe
// (*UpstreamRejectedError: credentials refused, or no such repository,
// which hosts answer a credential without access) is not asked again for
// that directory within a pace (Fetcher.RefusedPace, 5 s, doubling with
// each refusal after it up to 5 min): every caller, those queued behind
// the refused fetch too, gets the refusal at once as *RetryLaterError
// with the time left; the try after it is the fetch alone (no probe
// alongside, which would present the credential again). The pace is kept
// in memory, per process, with a SHA-256 of the URL and credential
// presented (never written anywhere);
// another credential, a request the upstream takes, or ForgetMissing ends
// it. An unavailable upstream (timeouts, 5xx, connection refused) is not
// paced here. A mirror's record is
// written under its lock (LockMirror, mirror_lock.go); it also keeps, for a
// failed first clone, the kind of failure, how many retries followed, when
// the last failed and the credentials file's modification time it read
// (StagedRecord), which package mirrors paces pins' retries by, and the
// generation of the clone the record belongs to (a random name each start
// writes; a clone's outcome is kept only under its own). A first clone's
// git writes into the staged repository only under that repository's own
// lock (LockStagedFetch), held across processes. Every request to an
// upstream (a fetch, a probe) waits for a turn among Root.UpstreamFetches,
// is refused below Root.DiskFloor and stopped when the free space drops
// below it (package limits); fetches run under their caller's deadline
// rather than GitTimeout (a first clone may take long) and leave no
// partial pack (tmp_*) behind.
//
// Housekeeping (housekeeping.go) runs `git gc --auto` in a mirror, never in
// a local project, in the foreground, with its own bound (longer than
// GitTimeout) and settings given on the command line: prune only what has
// been unreachable for two weeks, leave refs to the packer below. It also
// measures mirrors (object sizes, last fetch) for the metrics.
//
// Lock files older than the Root's StaleLockAge are a crashed writer's and
// are removed, under a per-repository flock that every cleaner takes, so one
// cannot remove a lock another writer has just taken. Loose refs are packed
// in the background once enough were created.
//
// Only package refs imports gitops (and cmd, to build the Root); git2go
// appears nowhere else, so it can be replaced here alone. gitops imports
// gitexec; the git smart-HTTP server that runners fetch from is package
// githttp, which runs git through gitexec too, not through gitops.
package gitops
