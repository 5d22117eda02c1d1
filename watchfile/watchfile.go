package watchfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// File is one watched file. Its zero value with Path set is ready; it is
// safe for concurrent use.
type File struct {
	// Path is the file.
	Path string

	mu sync.Mutex
	// stamp is the file as last read (good or bad); seen says there was a
	// read at all.
	stamp   stamp
	seen    bool
	lastErr error
}

// stamp tells one version of the file from another without reading it.
// The modification time and size alone miss an edit that keeps both (cp -p,
// rsync -t, tar x, touch -r set the old mtime on new content), so the
// change time and inode are in it too: no tool can set those back, and a
// rename into place (a Kubernetes Secret's symlink swap) changes the inode.
type stamp struct {
	modTime time.Time
	size    int64
	ctime   time.Time
	inode   uint64
}

func stampOf(st fs.FileInfo) stamp {
	s := stamp{modTime: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ctime = time.Unix(sys.Ctim.Unix())
		s.inode = sys.Ino
	}
	return s
}

// ReadError is a file that could not be stat'ed or read. Reason never quotes
// the file's content.
type ReadError struct {
	Path   string
	Reason string
}

func (e *ReadError) Error() string { return fmt.Sprintf("%s: %s", e.Path, e.Reason) }

// Load calls parse with the file's bytes when the file changed since the
// last call (or always, with force). changed says whether parse ran now;
// err is the error of the read or parse now, or, when nothing changed, the
// error of the last read (a bad file stays bad until it changes, without
// being read again on every use). The caller keeps whatever parse built
// only when err is nil, so a bad edit leaves the last good version in force.
func (f *File) Load(force bool, parse func(raw []byte) error) (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.Path)
	if err != nil {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		err = &ReadError{Path: f.Path, Reason: reason}
		// A missing file is a change worth one log line, then quiet.
		changed = !f.seen || f.lastErr == nil || f.lastErr.Error() != err.Error()
		f.seen, f.stamp, f.lastErr = true, stamp{}, err
		return changed, err
	}
	now := stampOf(st)
	if !force && f.seen && now == f.stamp {
		return false, f.lastErr
	}
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		err = &ReadError{Path: f.Path, Reason: "cannot be read"}
	} else {
		err = parse(raw)
	}
	f.seen, f.stamp, f.lastErr = true, now, err
	return true, err
}
