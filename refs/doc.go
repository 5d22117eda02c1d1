// Package refs is the domain of refkeeper: pins, their states (pinned,
// finished, deleted), the retention and max-age policy, the records in Redis
// and the GC sweep.
//
// A pin holds one pipeline ref alive. The truth is the record plus the ref
// itself: the record says what should exist and until when, git says what
// does. Every state change of a record is one Lua script, so racing clients
// and replicas see each transition whole; every ref write is git's own
// compare-and-swap, so a pipeline ref never moves.
//
// Deleting a ref is a three-step protocol that a racing re-pin can always
// win: claim the record for deletion (a token), delete the ref if it is still
// at the pinned SHA, then mark the record deleted only if the claim still
// stands. A re-pin in between clears the claim, and whoever sees the cleared
// claim re-creates the ref.
//
// Projects keeps mirrors: it registers one (a background first clone into a
// staged repository, renamed into place once it succeeded), says what every
// project is (local or mirror, cloning, ready or failed: read from the
// repository's own git config, never from Redis), deletes mirrors with their
// pins' records, and fetches what a pin on a mirror names before the pin is
// made. Upstream credentials come from a file (CredentialFile) read again
// when it changes.
//
// refs imports gitops (the only package that touches git) and go-redis. It is
// imported by api, jobs and cmd. What it needs from the task queue, it
// declares itself (ExpiryScheduler), so it never imports jobs.
package refs
