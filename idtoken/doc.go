// Package idtoken verifies a CI job's OpenID Connect ID token (GitLab's
// id_tokens, GitHub Actions, Gitea and Forgejo Actions) against the
// access file's identities entries, and answers the job's grant: one
// project and one pipeline (access.Job).
//
// A token is read (go-jose, asymmetric algorithms only) for its iss; only
// an issuer some entry names is ever contacted, so a token can make the
// service fetch nothing it was not configured to trust. The issuer's
// discovery document is read with github.com/coreos/go-oidc, the keys by a
// key set of our own (go-jose): lazily, at the first token of that
// issuer, so an issuer that is down at start stops nothing (its tokens get
// a transient error, 503, until it answers; a failed discovery is tried
// again after a few seconds, never once per request); discovery and keys
// are renewed hourly (the last good ones serving meanwhile if renewal
// fails), so a key the issuer withdrew stops verifying. Keys are cached;
// only a key id the cache lacks fetches them again, at most a few times a
// minute per issuer (an unknown key id is the cheapest forgery to make),
// a failed fetch standing meanwhile; a token the limit stops is a 503,
// never a final refusal. Every fetch is bounded in time and size, follows
// no redirect, and goes only to the issuer's own host and port, https (or
// http when the issuer is on a loopback address).
//
// Then the signature (the issuer's keys, the algorithms it publishes),
// iss, aud (one of the entries' audiences), exp, nbf and iat (60 s of
// leeway, exp and iat required, at most MaxLifetime between iat, now and
// exp) are checked; the entries of that issuer whose
// audience the token holds read its claims by their kind (gitlab:
// project_path, pipeline_id; github: repository, run_id), and those whose
// claims are there give the identity. Entries that read the token as
// different identities make it refused, and so does a project none of the
// accepting entries covers. Why a token is refused is logged, never the
// token, and is no caller's to read (api answers every refusal alike).
//
// It imports access (the entries, the grant) and refs (project names,
// pipeline ids); api uses it through an interface of its own, cmd builds
// it.
package idtoken
