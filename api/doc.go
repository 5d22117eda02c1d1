// Package api is refkeeper's HTTP surface: the REST API of the contract
// (pins, finish, delete, list, merge-request close, GC, and projects:
// registering, listing and deleting mirrors), health and metrics
// endpoints, the mount of the read-only git smart-HTTP server runners fetch
// from (package githttp), the git hosts' webhook routes /hooks/<host>
// (handled by package hooks), and the OpenAPI 3.1 document of all of it
// but the git mount (openapi.json, embedded and served at
// /api/v1/openapi.json; openapi_test.go validates real answers against it
// and checks it lists exactly the routes served).
//
// Every route names the access.Action it performs; a token's grant (admin
// for --tokens, else its role and projects in the --access file, package
// access; for any other token, a CI job's ID token as Config.IDTokens
// verifies it) must cover it, else 403 forbidden before anything is read
// or changed (auth.go). A job's ID token covers its own pipeline's pin
// (pin, get, finish) and nothing else; an issuer that cannot be asked is
// 503, never 401. The project listing is filtered to what the caller may
// read, and the git mount is told which projects an API token may fetch
// and which pin a job's ID token may. Webhook answers carry no fetch
// token.
//
// It owns HTTP concerns only: routing (echo), bearer and basic auth, strict
// JSON decoding, and the one mapping from the domain's typed errors to status
// codes and the JSON error body. Everything else it asks of refs (pins)
// and mirrors (projects).
//
// It issues the pins' fetch tokens (githttp.FetchSigner) and tells the git
// mount which tokens are API tokens; githttp does the rest, and its errors
// are mapped here like every other. Requests are rate limited per client
// address, read from X-Forwarded-For only behind trusted proxies, and per
// valid token (API or fetch token), in buckets of bounded number
// (ratelimit.go). A request body must arrive within BodyTimeout on /api/
// and /hooks/ and within the git timeout on /git/, else 408
// (deadlines.go); metrics are labelled by route pattern and HTTP's own
// methods only, so nothing a client invents adds a series (metrics.go).
// The repos root below its floor (limits.LowDiskError) is 507
// insufficient_storage with Retry-After.
//
// It mounts the web page /ui/ that cmd builds (package ui, Config.UI),
// handing it the same authenticator, so the page knows the same tokens.
//
// api imports access, githttp, hooks, mirrors, refs and limits (never gitops: it
// runs no git itself); only cmd imports api. echo appears only here and in
// cmd.
package api
