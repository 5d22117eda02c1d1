// Package access is who may do what: the --access file's scoped API
// tokens (roles admin, pipeline and read, each over project patterns),
// its trusted CI identities and its per-project webhook secrets, parsed
// strictly (an unknown field, a bad role, digest, pattern, kind, issuer or
// host is refused with one line), kept as the last good version and read
// again when the file changes (package watchfile). Tokens are known by
// their SHA-256 digests only and compared in constant time.
//
// Today it decides for API tokens (Grant.May) and hands out the webhook
// secrets that cover a project; identities are parsed and validated, but
// verifying a CI job's ID token is not done yet, so such a token is
// unknown (401) wherever it is presented.
//
// It imports refs (project names and patterns) and watchfile; api, hooks
// (through an interface of its own) and cmd use it. No HTTP here.
package access
