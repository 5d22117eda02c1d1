// Package mirrors keeps the projects whose repositories the service cloned
// from an upstream: the project registry, upstream credentials, the fetches
// a pin on a mirror needs, and the mirrors' housekeeping.
//
// Projects registers a mirror (a background first clone into a staged
// repository, renamed into place once it succeeded), says what every
// project is (local or mirror, cloning, ready or failed: read from the
// repository's own git config, never from Redis), deletes mirrors with their
// pins' records (the repository first, then the records), and fetches what a
// pin on a mirror names before the pin is made: it is the refs.PinFetcher
// the pin service is given, which also tries a failed first clone again when
// a pin names the mirror (CloneForPin). Those retries are paced (retry.go):
// the first pin after a failed clone tries at once, later ones at most once
// per RetryStep (30 s, doubling to 15 min) after the last failed try, as
// the mirror's record says (so replicas keep one pace); meanwhile a pin
// answers the recorded failure (*RetryLaterError: the same typed error, and
// the time left) without asking the upstream. A PUT starts the pace over,
// and so does a change of the mirror's own credential entry: the record
// keeps the credentials file's modification time and an HMAC-SHA256 of the
// entry as that clone read them, under a random key kept (mode 0600,
// package secretfile) in .mirrors/.credential-digest-key and shared by the
// replicas on the repos root, so every replica sees the fix, and a newer
// file whose entry digests alike (a touch, another credential rotated)
// restarts nothing. A stop of the service's own (the disk floor, no
// upstream turn, the staged repository's lock held by an earlier clone
// that did not end: *CloneLockedError) is no try: it is recorded as such, leaves the pace where
// it was, and below the floor a pin answers 507 without starting a clone.
// Every start of a first clone (registration, a PUT that changes the
// upstream, host or credential or restarts a failed one, a pin's retry)
// writes a new random generation into the record; the clone publishes or
// records its failure only while the record still holds its generation, so
// a superseded clone (a newer start, a deletion and new registration on
// another replica) changes nothing. A start stops the clone this process
// runs for the mirror; a clone running on another replica sees its
// generation gone within generationPoll and stops; the new clone's git
// waits for the staged repository's own lock (gitops.Root.LockStagedFetch),
// so two gits never write into it at once. Every read-and-write of a
// mirror's record (registration, update, a clone's outcome, publication,
// deletion) holds the mirror's lock (gitops.Root.LockMirror, an flock
// shared by replicas). Which merge or
// head ref a merge request has on the mirror's host is refs.HostKind's
// answer, the same one the pins use. Upstream credentials come from a file
// (CredentialFile) read again when it changes, each bound to the hosts it is
// for and the projects that may use it.
//
// A first clone runs under CloneTimeout (--clone-timeout), after the
// registration was answered; a new mirror is refused below the repos
// root's DiskFloor (507), and the fetches themselves are bounded by
// gitops.Root (a turn among --max-upstream-fetches, the disk floor).
//
// Every upstream is checked against UpstreamPolicy (--upstream-allow) at
// registration and before every fetch: the patterns, then the addresses the
// host resolves to (internal ones only through a pattern naming the host),
// which are handed to git pinned (gitops.Upstream.Resolve). A refusal, a
// redirect or a credential not for that host or project is
// *UpstreamNotAllowedError, one message whatever the reason.
//
// Replicas sharing one repos root share a mirror's fetches (FetchLeases:
// one replica fetches at a time, the others reuse what it fetched), through
// a refs.Lease in Redis that expires by itself if its holder dies.
//
// Housekeeping runs git's housekeeping (gitops.Root.HousekeepMirror: gc
// --auto with a two-week prune grace) in every mirror, never in a local
// project, at most once per mirror per interval across replicas and never
// in one mirror on two replicas at once (a refs.Lease per mirror, which
// outlives the run's bound). HousekeepingMetrics shows each mirror's size
// and last fetch from a snapshot of the disk at most a minute old, and
// counts the runs.
//
// mirrors imports refs (the domain's types, errors, Redis keys and lease),
// gitops, secretfile (the digest key) and watchfile (the credentials
// file's re-read). It is imported by
// api (the /api/v1/projects routes), jobs (the housekeeping task) and
// cmd, which wires it into refs.Service as its PinFetcher; refs never
// imports it.
package mirrors
