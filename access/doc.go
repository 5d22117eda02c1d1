// Package access is who may do what: the --access file's scoped API
// tokens (roles admin, pipeline and read, each over project patterns),
// its trusted CI identities and its per-project webhook secrets, parsed
// strictly (an unknown field, a bad role, digest, pattern, kind, issuer or
// host is refused with one line), kept as the last good version and read
// again when the file changes (package watchfile). Tokens are known by
// their SHA-256 digests only and compared in constant time.
//
// It decides for API tokens (Grant.May) and for CI jobs known by their ID
// tokens (role Job: Grant.MayPin, MayFetchPin, their own pipeline's pin
// only; package idtoken verifies the tokens against the Identities), and
// hands out the webhook secrets that cover a project.
//
// It imports refs (project names and patterns) and watchfile; api, hooks
// (through an interface of its own) and cmd use it. No HTTP here.
package access
