package refs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// DefaultKeyPrefix is the first part of every Redis key refkeeper writes.
const DefaultKeyPrefix = "refkeeper"

// Keys is the Redis key schema, the only place where a key is spelled:
// the pin store, the mirrors' leases and the webhook delivery store all
// take their keys from here, and every Lua script is handed its keys (as
// KEYS[]) by its caller, never builds one. Every key of one project carries
// the hash tag {<project>}, so the keys one script touches share a Redis
// Cluster slot.
//
// The zero value uses DefaultKeyPrefix.
type Keys struct {
	// Prefix starts every key; empty: DefaultKeyPrefix.
	Prefix string
}

func (k Keys) prefix() string {
	if k.Prefix != "" {
		return k.Prefix
	}
	return DefaultKeyPrefix
}

// base is the key prefix of one project; the braces are the Cluster hash tag.
func (k Keys) base(p Project) string { return k.prefix() + ":{" + string(p) + "}:" }

// ProjectPattern matches every key of the project (for SCAN).
func (k Keys) ProjectPattern(p Project) string { return k.base(p) + "*" }

// Projects is the set of projects that have records.
func (k Keys) Projects() string { return k.prefix() + ":projects" }

// Pin is one pin's record, a hash.
func (k Keys) Pin(p Project, id PipelineID) string { return k.base(p) + "pin:" + id.String() }

// Index is the project's pins in one state, a sorted set of members
// "<created ms, 15 digits>:<id, 19 digits>" (see luaPrelude).
func (k Keys) Index(p Project, st State) string { return k.base(p) + "idx:" + string(st) }

// The clocks of the due rule (see luaDueRule), sorted sets of ids.
func (k Keys) age(p Project) string     { return k.base(p) + "age" }
func (k Keys) expires(p Project) string { return k.base(p) + "expires" }
func (k Keys) purge(p Project) string   { return k.base(p) + "purge" }

// MergeRequests indexes the project's pins by merge request: a sorted set
// of members "<iid, 19 digits>:<id, 19 digits>", so that one key of the
// project answers any merge request's pins.
func (k Keys) MergeRequests(p Project) string { return k.base(p) + "mrs" }

// Incarnation holds the server ids of the data set every project was last
// reconciled against (see Store.Incarnation).
func (k Keys) Incarnation() string { return k.prefix() + ":incarnation" }

// Replicated is written right before a WAIT for replicas (see
// Store.Replicated); it expires on its own.
func (k Keys) Replicated(p Project) string { return k.base(p) + "replicated" }

// Reconciled marks a recent reconcile of the project.
func (k Keys) Reconciled(p Project) string { return k.base(p) + "reconciled" }

// ExpiryLease is the lease on the project's due deletions and the note a
// deleter that found it held leaves for its holder.
func (k Keys) ExpiryLease(p Project) (lease, note string) {
	return k.base(p) + "expiring", k.base(p) + "expiring:again"
}

// HousekeepingLease is the lease on a mirror's housekeeping and the marker
// of a run within the interval.
func (k Keys) HousekeepingLease(p Project) (lease, done string) {
	return k.base(p) + "housekeeping:lease", k.base(p) + "housekeeping:done"
}

// FetchLease is the lease on a mirror's upstream fetches; FetchSeq numbers
// the fetches, FetchDone is the last successful one.
func (k Keys) FetchLease(p Project) string { return k.base(p) + "fetch:lease" }
func (k Keys) FetchSeq(p Project) string   { return k.base(p) + "fetch:seq" }
func (k Keys) FetchDone(p Project) string  { return k.base(p) + "fetch:done" }

// Delivery is the stored answer to a host's webhook delivery id. Ids are
// whatever the host sends: hashed, so a key is bounded and cannot collide
// across hosts.
func (k Keys) Delivery(host, id string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + id))
	return k.prefix() + ":delivery:" + hex.EncodeToString(sum[:])
}

// EventTime is the time of the latest webhook event applied to a pin.
func (k Keys) EventTime(p Project, id PipelineID) string { return k.base(p) + "hookat:" + id.String() }

// clocks are the keys of the due rule's clocks, in luaDueRule's order.
func (k Keys) clocks(p Project) []string { return []string{k.age(p), k.expires(p), k.purge(p)} }

// project are the project's KEYS of every per-pin script, in scripts.go's
// order (see luaPrelude).
func (k Keys) project(p Project) []string {
	return append([]string{k.Index(p, StatePinned), k.Index(p, StateFinished), k.Index(p, StateDeleted)},
		append(k.clocks(p), k.MergeRequests(p))...)
}

// pin are the KEYS a per-pin script takes, in scripts.go's order.
func (k Keys) pin(p Project, id PipelineID) []string {
	return append([]string{k.Pin(p, id)}, k.project(p)...)
}

// mergeRequestRange is the lexical range of one merge request's members in
// MergeRequests.
func mergeRequestRange(iid MergeRequestIID) (min, max string) {
	padded := fmt.Sprintf("%019d", int64(iid))
	return "[" + padded + ":", "(" + padded + ";"
}
