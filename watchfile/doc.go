// Package watchfile re-reads a configuration file when it changed: one stat
// per use, a new read only when the modification time, size, change time or
// inode moved. It is
// the one way refkeeper's re-read files (the --access and --credentials
// files) notice an edit or a rotation by whatever writes them, with no
// goroutine and no inotify: a file on a Kubernetes Secret volume (a symlink
// swap) is seen like any other write. A bad version is reported once per
// change and not read again until the file changes; the caller keeps its
// last good one.
//
// It is a leaf: it imports nothing of refkeeper, and any package that keeps
// a file it must read again may import it (access, mirrors).
package watchfile
