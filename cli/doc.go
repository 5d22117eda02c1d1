// Package cli is refkeeper's client side on the command line: the API
// commands for people and scripts (pin, finish, get, list, delete, close,
// gc, projects; cli*.go, on package client) and a job's checkout of its
// pinned ref (checkout*.go, the git CLI through gitexec).
//
// Run runs one command by name; Commands and Usage say which there are. Two
// binaries dispatch to it: cmd/refkeeper (the server, which also has serve)
// and cmd/refkeeper-job (these commands alone, built with CGO_ENABLED=0 so
// that a job's image needs git and one static binary). The two must behave
// the same, so everything a command does lives here, down to its exit
// status (the Exit* constants) and its one line of error.
//
// It imports client and gitexec of refkeeper's packages and nothing that
// reaches git2go or any other cgo (the layout test's cgoFree holds it to
// that). Only the two main packages import it.
//
// A command's token never comes from argv: REFKEEPER_TOKEN or --token-file;
// checkout's pin lookup may also use the job's own ID token
// (REFKEEPER_ID_TOKEN, or one requested from GitHub's or Gitea's Actions
// runtime; idtoken.go). checkout never destroys work: it refuses a DIR that
// an earlier checkout did not make or that has local changes
// (checkout_dir.go).
package cli
