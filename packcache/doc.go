// Package packcache shares one `git pack-objects` among identical runner
// fetches: the 30 to 100 jobs of a pipeline fetch the same pinned commit
// within seconds, and each would otherwise pay for its own pack.
//
// git upload-pack runs its pack-objects through uploadpack.packObjectsHook
// when that is set in protected configuration. Cache.Hook answers the
// environment that sets it for one `git http-backend` run (as command-line
// configuration, GIT_CONFIG_COUNT/KEY/VALUE, never in a repository's
// config) and a one-time ticket naming that run's repository. The hook is
// this binary's `pack-objects-hook` command (RunHook): it hands its
// arguments and stdin to the server over a unix socket and copies the
// answer to upload-pack. The server keys the request by the hash of the
// project, the protocol version, the pack-objects arguments and the stdin
// (wants, shallows, haves: what upload-pack derived after the scope
// filter), never by a token or identity, and answers from a file-backed
// entry:
//
//   - one generation per key: the first request runs pack-objects into a
//     file, identical requests read that file from offset 0 and follow the
//     writer until it is done;
//   - the generation belongs to the cache, not to the request that started
//     it: a client going away does not stop it while another reads it or
//     once it has written a byte (the --git-timeout bound does, and
//     Close); one whose every reader left before it wrote anything (still
//     waiting for its turn, or git not answering yet) is ended and
//     dropped, so clients that go away hold no turn and no request body;
//   - the index lives in memory and each process writes into a directory
//     of its own that it holds a lock on: a directory whose lock is free
//     (its process died) is removed at start, so a partial entry is never
//     served after a crash;
//   - entries older than MaxAge are not served again, and the oldest
//     finished ones go when the entries pass MaxBytes;
//   - the cache bypasses itself (upload-pack runs pack-objects as without
//     it) when it is off, when the disk is below its floor (BelowFloor),
//     and for arguments it does not know.
//
// The same entries serve other producers: Share takes a key (parts,
// hashed in a namespace of their own, so no hook key is ever one of them)
// and a Generate function, and answers a Reader that follows the writer
// from offset 0, hit or miss, with the same single flight, eviction,
// BelowFloor bypass and metrics. githttp keeps the whole answers of
// scoped fetches there (a hit runs no git); Reader.Rest hands a finished
// entry's file to net/http for sendfile.
//
// The socket lies in a directory of mode 0700 and answers only peers of
// this process's user (SO_PEERCRED); a request without a live ticket is
// told to bypass, and a ticket is good for the one repository of the one
// request it was made for, once: the socket is no way to read another
// project's packs.
//
// Metrics: refkeeper_pack_cache_requests_total{result="hit|miss|bypass"}
// and refkeeper_pack_cache_bytes (hook packs and shared answers alike).
// packcache imports gitexec alone and no cgo package; githttp reaches it
// through its own PackCache interface.
package packcache
