package secretfile

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Mode is what a generated secret file is, and the most a kept
// one may be: the owner's only.
const Mode = 0o600

// Shared reads the secret kept in path, or, when there is none,
// creates it (32 random bytes, base64url): create-if-absent, so processes
// starting together on one root agree on the first one written. A file
// others may read, or that is empty, is refused rather than used.
func Shared(path string) (secret string, created bool, err error) {
	for range 3 {
		secret, err := Read(path)
		if err == nil {
			return secret, false, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", false, err
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", false, err
		}
		secret = base64.RawURLEncoding.EncodeToString(b[:])
		err = createExclusive(path, []byte(secret+"\n"), Mode)
		if err == nil {
			return secret, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", false, err
		}
		// Another process wrote it first: read theirs.
	}
	return "", false, fmt.Errorf("%s keeps appearing and vanishing", path)
}

// Read reads a kept secret: one line, in a regular file of this
// process's own user that only its owner may read. The file is opened
// without following a symbolic link and without blocking (a FIFO planted
// there would hold the start forever), so whoever else can write beside
// the repos root can neither choose the secret nor make this process read
// (and print) a file of theirs.
func Read(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return "", fmt.Errorf("%s is a symbolic link; delete it for a new one", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s belongs to user %d, not to this process's user %d; delete it for a new one", path, sys.Uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm&^Mode != 0 {
		return "", fmt.Errorf("%s has mode %04o: others may read it; chmod 600 it, or delete it for a new one", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" || strings.ContainsAny(secret, "\n\r") {
		return "", fmt.Errorf("%s does not hold one secret on one line; delete it for a new one", path)
	}
	return secret, nil
}

// createExclusive writes data to path through a temporary file linked
// into place, so the file appears whole with its mode, and only if no file
// was there: fs.ErrExist otherwise.
func createExclusive(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
