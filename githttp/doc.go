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
// With a PackCache (package packcache, wired by cmd), identical fetches
// share their work (the cache's single-flight, file-backed entries):
//
//   - a scoped request (fetch token or job ID token) is rebuilt by the
//     scope filter, so all runners of one pin send the same bytes: its
//     upload-pack posts that may pack and its v0/v1 advertisement are
//     answered whole from the cache (respcache.go). The key is the
//     project, the pin's ref and SHA, the protocol version, the endpoint,
//     the content type, the filtered body and whether a want-ref was
//     rewritten; no token or identity. One `git http-backend` (without the
//     hook) generates the answer the client receives (after stripSymrefs
//     or addWantedRef) on the cache's context, within --git-timeout, in
//     one --max-git-http turn; readers take no turn and run no git. Only a
//     whole 200 is kept (an advertisement only when it lists the pinned
//     ref at the pinned SHA); a failed generation is dropped, and its
//     readers' answers end as when git fails. A finished entry is sent
//     with its Content-Length from its file (sendfile), in steps under the
//     write deadline; one still generated is streamed as it grows;
//   - any other upload-pack request (an API token's) gets the cache's hook
//     in its http-backend's environment as command-line configuration:
//     upload-pack hands its pack-objects to the cache, and identical
//     requests share one pack generation.
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
// refkeeper_git_bytes_served_total. It imports refs, gitexec, pktline,
// limits and packcache; only api imports it.
package githttp
