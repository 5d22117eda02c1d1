// Package pktline is the one codec of git's pkt-line framing: four hex
// digits of length (themselves included), then the data; "0000" (flush),
// "0001" (delim) and "0002" (response end) carry none. Decode splits a
// whole body, Encode writes one.
//
// githttp reads a fetch token's upload-pack requests and a v0 ref
// advertisement with it; what a packet means is the caller's to judge
// (a request may carry no NUL, an advertisement does). It imports nothing
// of refkeeper and no cgo package, so any package may import it.
package pktline
