// Package api is refkeeper's HTTP surface: the REST API of the contract
// (pins, finish, delete, list, merge-request close, GC), health and metrics
// endpoints, the read-only git smart-HTTP mount runners fetch from, and the
// git hosts' webhook routes /hooks/<host> (handled by package hooks).
//
// It owns HTTP concerns only: routing (echo), bearer and basic auth, strict
// JSON decoding, and the one mapping from the domain's typed errors to status
// codes and the JSON error body. Everything else it asks of refs.
//
// api imports hooks and refs; only cmd imports api. echo appears only here and in cmd.
package api
