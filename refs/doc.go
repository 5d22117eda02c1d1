// Package refs is the domain of refkeeper: pins, their states (pinned,
// finished, deleted), the retention and max-age policy, the records in Redis
// and the GC sweep.
//
// A pin holds one pipeline ref alive. The truth is the record plus the ref
// itself: the record says what should exist and until when, git says what
// does. Every state change of a record is one Lua script (scripts.go), so
// racing clients and replicas see each transition whole; its answer is
// decoded once into a typed status (status.go). Every ref write is git's
// own compare-and-swap, so a pipeline ref never moves.
//
// When a record is due is decided in one place, the Lua of luaDueRule:
// records sit on clocks (sorted sets scored by created_at or first-seen,
// by expires_at, and by deleted_at) and are due once a clock has run the
// length the policy in force gives it. So a process started with another
// max-age applies it to every record at once. expires_at itself is fixed
// when a pin finishes, with the retention in force then: it is what the
// client was told.
//
// A pin may name a merge the service computes (merge.go): an omitted source
// is the merge request's head ref on the project's host kind, a mirror
// first fetches the named refs and the SHAs it lacks (mirror_pins.go),
// source and target are resolved to commits, gitops writes their merge
// commit, and the pin goes on as a pin of that SHA. The record keeps the inputs, so a sweep can
// make a vanished merge commit again before it restores the ref.
//
// Deleting a ref is a three-step protocol that a racing re-pin can always
// win: claim the record for deletion (a token), delete the ref if it is
// still at the pinned SHA while asking, under git's lock, whether the claim
// still stands, then mark the record deleted if it does. A re-pin in
// between clears the claim, and whoever sees the cleared claim re-creates
// the ref. Once git has committed, the record update runs to its end even
// if the caller has gone.
//
// Due deletions are per project: ExpireDue (the task at expires_at) and
// every sweep delete all that is due in a project in batches of up to
// 10,000 refs, one git transaction each, holding the project's expiry lease
// in Redis. A deleter that finds the lease held leaves a note and the
// holder goes round again, so deleters never take each other's claims and
// a burst of expiries costs a few transactions.
//
// Every time is Clock's; in production that is RedisClock, so replicas
// stamp and compare records with one clock. Metrics read the pin counts
// from Redis at most every 15 s, in one pipelined round trip, whatever the
// number of projects; a sweep drops a project whose repository is gone once
// it has no live pin.
//
// Projects keeps mirrors: it registers one (a background first clone into a
// staged repository, renamed into place once it succeeded), says what every
// project is (local or mirror, cloning, ready or failed: read from the
// repository's own git config, never from Redis), deletes mirrors with their
// pins' records, and fetches what a pin on a mirror names before the pin is
// made. Upstream credentials come from a file (CredentialFile) read again
// when it changes.
//
// Housekeeping runs git's housekeeping (gitops.Root.HousekeepMirror: gc
// --auto with a two-week prune grace) in every mirror, never in a local
// project, at most once per mirror per interval across replicas and never
// in one mirror on two replicas at once (a lease per mirror in Redis, which
// outlives the run's bound). HousekeepingMetrics shows each mirror's size
// and last fetch from a snapshot of the disk at most a minute old, and
// counts the runs.
//
// refs imports gitops (the only package that touches git) and go-redis. It is
// imported by api, jobs and cmd. What it needs from the task queue, it
// declares itself (ExpiryScheduler), so it never imports jobs.
package refs
