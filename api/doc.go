// Package api is refkeeper's HTTP surface: the REST API of the contract
// (pins, finish, delete, list, merge-request close, GC, and projects:
// registering, listing and deleting mirrors), health and metrics
// endpoints, and the read-only git smart-HTTP mount runners fetch from.
//
// It owns HTTP concerns only: routing (echo), bearer and basic auth, strict
// JSON decoding, and the one mapping from the domain's typed errors to status
// codes and the JSON error body. Everything else it asks of refs.
//
// api imports refs; only cmd imports api. echo appears only here and in cmd.
package api
