package refs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// CredentialFile is the --credentials file: named upstream credentials,
// {"name": {"username": "…", "password": "…"}}. It is read again when its
// modification time or size changed since the last read (checked on every
// use: one stat), so a token rotated hourly by whatever writes the file is
// used from its next fetch on. Secrets stay in memory: no method returns
// them in an error, and Credential values print without the password.
type CredentialFile struct {
	// Path is the file; empty: no credentials at all.
	Path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	loaded  bool
	entries map[string]gitops.Credential
}

// CredentialFileError is a credentials file that cannot be read or is not
// the documented JSON. The message never quotes the file's content.
type CredentialFileError struct {
	Path   string
	Reason string
}

func (e *CredentialFileError) Error() string {
	return fmt.Sprintf("credentials file %s: %s", e.Path, e.Reason)
}

type credentialEntry struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Load reads the file now; cmd calls it at start-up so that a bad file
// stops the process with a clear line instead of failing the first fetch.
func (c *CredentialFile) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(true)
}

// Lookup answers the credential of that name. ok is false when the file has
// no such entry (or there is no file). When the file changed into something
// unreadable, the entries last read stay in use and the error is returned
// alongside them, for the caller to log.
func (c *CredentialFile) Lookup(name string) (cred gitops.Credential, ok bool, err error) {
	if c == nil || c.Path == "" {
		return gitops.Credential{}, false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.reloadLocked(false)
	cred, ok = c.entries[name]
	return cred, ok, err
}

// reloadLocked reads the file if it changed (or always, with force).
func (c *CredentialFile) reloadLocked(force bool) error {
	st, err := os.Stat(c.Path)
	if err != nil {
		reason := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		return &CredentialFileError{Path: c.Path, Reason: reason}
	}
	if !force && c.loaded && st.ModTime().Equal(c.modTime) && st.Size() == c.size {
		return nil
	}
	raw, err := os.ReadFile(c.Path)
	if err != nil {
		return &CredentialFileError{Path: c.Path, Reason: "cannot be read"}
	}
	var parsed map[string]credentialEntry
	if err := json.Unmarshal(raw, &parsed); err != nil {
		// encoding/json's messages may quote a character of the input:
		// say where, never what.
		reason := "is not a JSON object of {\"username\", \"password\"} entries"
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			reason = fmt.Sprintf("is not valid JSON (at byte %d)", syn.Offset)
		}
		return &CredentialFileError{Path: c.Path, Reason: reason}
	}
	entries := make(map[string]gitops.Credential, len(parsed))
	for name, e := range parsed {
		if name == "" || e.Username == "" || e.Password == "" {
			return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q needs a name, a username and a password", name)}
		}
		entries[name] = gitops.Credential{Username: e.Username, Password: e.Password}
	}
	c.entries, c.modTime, c.size, c.loaded = entries, st.ModTime(), st.Size(), true
	return nil
}
