// Package idtoken verifies a CI job's OpenID Connect ID token (GitLab's
// id_tokens, GitHub Actions, Gitea and Forgejo Actions) against the
// access file's identities entries, and answers the job's grant: one
// project and one pipeline (access.Job).
//
// A token is read (go-jose, asymmetric algorithms only) for its iss; only
// an issuer some entry names is ever contacted, so a token can make the
// service fetch nothing it was not configured to trust. The issuer's
// discovery document and keys are fetched with github.com/coreos/go-oidc:
// lazily, at the first token of that issuer, so an issuer that is down at
// start stops nothing (its tokens get a transient error, 503, until it
// answers; a failed discovery is tried again after a few seconds, never
// once per request); discovery and keys are renewed hourly (the last good
// ones serving meanwhile if renewal fails), so a key the issuer withdrew
// stops verifying; keys are cached and fetched again for an unknown key
// id, at most a few times a minute per issuer (an unknown key id is the
// cheapest forgery to make). Every fetch is bounded
// in time and size, follows no redirect, and goes only to an https URL (or
// http on a loopback address, as the entry's issuer may be).
//
// Then the signature (the issuer's keys, the algorithms it publishes),
// iss, aud (one of the entries' audiences), exp, nbf and iat (60 s of
// leeway, exp required) are checked; the entries of that issuer whose
// audience the token holds read its claims by their kind (gitlab:
// project_path, pipeline_id; github: repository, run_id), and those whose
// claims are there give the identity. Entries that read the token as
// different identities make it refused. No token is ever logged.
//
// It imports access (the entries, the grant) and refs (project names,
// pipeline ids); api uses it through an interface of its own, cmd builds
// it.
package idtoken
