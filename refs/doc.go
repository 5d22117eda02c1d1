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
// Which merge or head ref a merge request has is decided in one place,
// HostKind (hosts.go): a pin by merge request alone takes the host's merge
// ref, and a computed merge's omitted source is its head ref.
//
// A pin may name a merge the service computes (merge.go): source and
// target are resolved to commits (a mirror first fetches the named refs and
// the SHAs it lacks, through PinFetcher), gitops writes their merge commit,
// and the pin goes on as a pin of that SHA. The record keeps the inputs, so
// a sweep can make a vanished merge commit again before it restores the ref.
//
// Deleting a ref (delete.go) is a three-step protocol that a racing re-pin
// can always win: claim the record for deletion (a token), delete the ref if
// it is still at the pinned SHA while asking, under git's lock, whether the
// claim still stands, then mark the record deleted if it does. A re-pin in
// between clears the claim, and whoever sees the cleared claim re-creates
// the ref. Once git has committed, the record update runs to its end even if
// the caller has gone.
//
// Due deletions (expiry.go) are per project: ExpireDue (the task at
// expires_at) and every sweep delete all that is due in a project in batches
// of up to 10,000 refs, one git transaction each, holding the project's
// expiry lease in Redis. A deleter that finds the lease held leaves a note
// and the holder goes round again, so deleters never take each other's
// claims and a burst of expiries costs a few transactions.
//
// Redis may lose acknowledged writes (a failover to a lagging replica):
// a request naming a pin whose ref has no record adopts the ref first
// (recover.go), a sweep reconciles every project when Redis's server ids
// changed (incarnation.go), and Store.Replicated (replicas.go) makes a
// request wait until enough replicas have its changes.
//
// Every time is Clock's; in production that is RedisClock, so replicas
// stamp and compare records with one clock. Metrics read the pin counts
// from Redis at most every 15 s, in one pipelined round trip, whatever the
// number of projects; a sweep drops a project whose repository is gone once
// it has no live pin.
//
// The Redis key schema is one file (keys.go, Keys): the pin store, the
// mirrors and the webhook delivery store take their keys from it, and every
// Lua script is handed its keys as KEYS[], so the whole lifecycle runs on a
// Redis Cluster (every key of a project carries its hash tag). Store's
// methods are in store.go, the scripts in scripts.go. Lease (lease.go) is
// the one lease primitive (the expiry lease here, the mirrors' fetch and
// housekeeping leases); Cache (cache.go) the one cache with a maximum age;
// CheckPage (page.go) the one check of a listing's cursor and limit;
// FromGit (errors.go) the one translation of gitops' errors about projects
// and objects into the domain's.
//
// refs imports gitops (the only package that touches git) and go-redis. It is
// imported by mirrors, hooks, api, jobs and cmd. What it needs from the task
// queue and from the mirrors, it declares itself (ExpiryScheduler,
// PinFetcher), so it never imports jobs or mirrors.
package refs
