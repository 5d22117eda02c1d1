// Package githttp is the runners' fetch path: it serves the repositories
// read-only over git's smart HTTP protocol, at /git/<project>.git/...
// (Server, mounted by api), with the real git.
//
// A request is authorized by an API token (the projects its role covers,
// as the mounting package says; any other is 403 before the repository is
// looked up, so nothing is learnt of it), a CI job's ID token (Caller.Job,
// as the mounting package verified it: its pipeline's pin, held to it as a
// fetch token of it is; another project 403, no live pin 404) or a pin's
// scoped fetch token (FetchSigner: HMAC-signed, one pipeline ref of one
// project while that pin lives, keys rotating). Pushes are refused (403),
// only the smart protocol is served, and a fetch token's upload-pack
// request (protocol v0 and v2) is read as pkt-lines (package pktline)
// and held to its pin before git sees it (uploadpack.go): wants of the
// pinned SHA only, haves the pin reaches, no tags or filters; its v0
// advertisement lists the pinned ref alone, symrefs removed, and offers
// allow-tip-sha1-in-want (go-git fetches by SHA only then; the filter
// still lets no other want through). A v2 want-ref of the pinned ref is
// given to git as a want of its SHA, and the wanted-refs section is added
// to the answer (addWantedRef).
//
// With a PackCache (package packcache, wired by cmd), each upload-pack
// request's http-backend gets the cache's hook in its environment as
// command-line configuration: upload-pack then hands its pack-objects (what
// it derived from the request the filter rebuilt) to the cache, and
// identical requests share one generation.
//
// git http-backend runs through the one git runner (package gitexec), like
// every git process of the service: its allow-listed environment, hooks
// off, its own process group, SIGTERM at the end of the request or at the
// Timeout (--git-timeout), SIGKILL after a grace. The server speaks CGI to
// it itself (backend.go): an environment of the runner's allow list and
// the CGI variables http-backend reads, built from the request the server
// rebuilt, so no header reaches git but Content-Type and the protocol
// version the server read from the canonical Git-Protocol header, and no
// Authorization or REFKEEPER_* variable ever does; the body buffered (up
// to 32 MiB, gzip inflated: git sends large negotiations chunked) and
// given on stdin with its length; the CGI header block parsed and the rest
// streamed to the client as git writes it. git that cannot start, or ends
// before its header, is *refs.UnavailableError (503, retry). At most
// MaxBackends (--max-git-http) http-backend processes run at once: a
// request read whole waits up to QueueWait (30 s) for a turn, then is
// answered 503 (limits.Slots).
//
// Errors are *Error (a status and a message) or the domain's; the mounting
// package writes them. githttp registers refkeeper_git_fetches_total and
// refkeeper_git_bytes_served_total. It imports refs, gitexec, pktline and
// limits; only api imports it.
package githttp
