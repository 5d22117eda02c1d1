// Package testdata holds helpers that give tests real dependencies instead
// of mocks: a redis-server process on a free port (StartRedis), a Redis
// Cluster of three such processes (StartCluster), a master with a replica
// and three redis-sentinel processes to fail it over (StartFailover), bare git
// repositories built with the git CLI (NewBareRepo), and a git host to mirror
// (StartUpstream: `git http-backend` behind basic auth, with GitHub- and
// GitLab-shaped merge request refs, that can stop, stall and change its
// password; it is on loopback, so a service mirroring it allows
// LoopbackUpstreams). The servers an attacker would point a mirror at are
// real too: StartCredentialTrap (asks for a password and records what it
// gets) and StartRedirector (answers 301 elsewhere). StartIssuer is an
// OpenID Connect issuer of CI jobs' ID tokens (discovery, key set, RSA
// keys made at test time, rotation, GitLab- and GitHub-shaped tokens, the
// forgeries of alg none and HS256, and GitHub's Actions token endpoint).
//
// StartServer runs `refkeeper serve` as a process of its own, from the
// binary RefkeeperBinary builds once per test binary; a package that uses
// it calls Main from its TestMain, which removes that binary at the end.
// RunnerGit runs the git CLI as a CI runner does (HeadOf reads a work
// tree's HEAD with it), and WaitFor waits for what another process does. The system tests (systest), the CLI's tests (cli)
// and the client's tests share them.
//
// The package lives in a directory named testdata so that `go test ./...`
// and `go vet ./...` skip it: its own tests start processes and are run on
// demand with `go test ./testdata` (not ./testdata/..., which also skips
// testdata directories and matches nothing). Importing it by its full path
// works as for any other package.
//
// Every helper takes a testing.TB first, marks itself with tb.Helper and
// fails the test with the command's output instead of returning errors, so
// callers stay short. Resources are released with tb.Cleanup.
package testdata
