// Package limits holds the service's resource bounds, each written once
// and used wherever the resource is spent:
//
//   - Slots bounds how many of one kind of work run at once in this
//     process (upstream clones and fetches: --max-upstream-fetches; git
//     http-backend processes: --max-git-http); callers beyond the bound
//     wait in line until their context ends, then get *BusyError.
//   - DiskFloor is the free space a directory's file system keeps
//     (--min-free-disk, the repos root): Check answers *LowDiskError below
//     it, and Watch ends a context with that error as its cause when the
//     space drops below it while work runs (a clone that fills the disk
//     is stopped).
//
// limits imports nothing of refkeeper and uses no cgo; any package may
// import it (gitops, githttp, mirrors, api and cmd/refkeeper do).
package limits
