// Package gitexec runs the git CLI: it is the one place a git process is
// started, for the server (gitops writes refs, fetches and merges through
// it; githttp runs `git http-backend` through it) and for the runner side
// (package cli's checkout).
//
// Command starts every process the same way: in a process group of its
// own, signalled whole, so a helper git starts (git-remote-http,
// upload-pack under http-backend) ends with it; SIGTERM when the caller's
// context ends or the process's bound passes (git removes its lock files
// on SIGTERM), SIGKILL a grace later, and the pipes closed then, so Wait
// returns in any case.
//
// A Runner adds what every server-side git gets: an environment built from
// an allow list (Env: PATH, HOME=/dev/null, no system or global git
// config, no prompts, LC_ALL=C), never this process's own, so no secret of
// the service reaches git or a program it starts; repository hooks off
// (core.hooksPath=/dev/null); and its Timeout (the serve flag
// --git-timeout) as the bound, unless a caller gives a bound of its own
// (housekeeping: --maintenance-timeout).
//
// Stderr keeps what a git process writes to stderr to a bounded head and
// tail (16 KiB each by default): every server-side caller reads git's
// stderr through one, so an upstream streaming any amount of `remote:`
// noise costs a fixed amount of memory.
//
// ConfigEnv writes git configuration into an environment
// (GIT_CONFIG_COUNT/KEY/VALUE): command-line configuration that git trusts
// where it trusts no repository's (the pack cache's
// uploadpack.packObjectsHook) and that no process list shows.
//
// gitexec imports nothing of refkeeper and no cgo package (git2go stays in
// gitops): a cgo-free client binary can use it. Of the non-test code, only
// this package imports os/exec, and none net/http/cgi (the test helpers in
// testdata may use both; the layout test checks it). Any package may
// import gitexec; today gitops, githttp, packcache and cmd/refkeeper do.
package gitexec
