package gitops

// #cgo pkg-config: libgit2
// #include <git2.h>
import "C"

// LibgitVersion answers the version of libgit2 gitops was built against.
// git2go does not export it; the header's macro is the one source.
func LibgitVersion() string { return C.LIBGIT2_VERSION }
