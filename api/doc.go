// Package api is refkeeper's HTTP surface: the REST API of the contract
// (pins, finish, delete, list, merge-request close, GC, and projects:
// registering, listing and deleting mirrors), health and metrics
// endpoints, the read-only git smart-HTTP mount runners fetch from, the
// git hosts' webhook routes /hooks/<host> (handled by package hooks), and
// the OpenAPI 3.1 document of all of it but the git mount (openapi.json,
// embedded and served at /api/v1/openapi.json; openapi_test.go validates
// real answers against it and checks it lists exactly the routes served).
//
// It owns HTTP concerns only: routing (echo), bearer and basic auth, strict
// JSON decoding, and the one mapping from the domain's typed errors to status
// codes and the JSON error body. Everything else it asks of refs (pins)
// and mirrors (projects).
//
// The git mount runs `git http-backend` with a request and an environment
// it builds from allow lists, and holds a scoped fetch token's upload-pack
// requests (protocol v0 and v2) to its pin by reading their pkt-lines
// before git does (uploadpack.go). Requests are rate limited per client
// address, read from X-Forwarded-For only behind trusted proxies, and per
// valid token, in buckets of bounded number (ratelimit.go).
//
// api imports hooks, mirrors and refs; only cmd imports api. echo appears only here and in cmd.
package api
