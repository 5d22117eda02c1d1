// Command refkeeper-job is refkeeper for CI jobs: the client commands of
// package cli (checkout, pin, get, list, finish, close, delete, gc,
// projects) and version, without serve. It imports no cgo, so it builds
// with CGO_ENABLED=0 into one static binary (`make build-job`, the
// Dockerfile's `job` target), and a job's image needs only that binary,
// installed as `refkeeper`, and git.
//
// Its commands are the server binary's (cmd/refkeeper dispatches to the
// same package): the same flags, output and exit statuses, so a job's
// command line does not depend on which of the two it runs. Nothing
// imports it.
package main
