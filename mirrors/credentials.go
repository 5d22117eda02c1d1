package mirrors

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/watchfile"
)

// CredentialFile is the --credentials file: named upstream credentials,
// {"name": {"username": "…", "password": "…"}}, each optionally bound to
// the hosts it is for ("hosts": ["github.com"]): a mirror whose upstream
// is on another host cannot use it, so whoever may register mirrors cannot
// point a credential at a server of their own. It is read again when its
// modification time or size changed since the last read (checked on every
// use: one stat), so a token rotated hourly by whatever writes the file is
// used from its next fetch on. Secrets stay in memory: no method returns
// them in an error, and Credential values print without the password.
type CredentialFile struct {
	// Path is the file; empty: no credentials at all.
	Path string

	watch   watchfile.File
	mu      sync.Mutex
	entries map[string]storedCredential
}

// storedCredential is one entry of the file.
type storedCredential struct {
	cred  gitops.Credential
	hosts []string // empty: any host
}

// allows reports whether the credential may be sent to the upstream at
// rawURL: its host (with the port, as written) is one of the entry's hosts,
// or the entry names none.
func (c storedCredential) allows(rawURL string) bool {
	if len(c.hosts) == 0 {
		return true
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(c.hosts, func(h string) bool { return strings.EqualFold(h, u.Host) })
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
	Username string   `json:"username"`
	Password string   `json:"password"`
	Hosts    []string `json:"hosts"`
}

// Load reads the file now; cmd calls it at start-up so that a bad file
// stops the process with a clear line instead of failing the first fetch.
func (c *CredentialFile) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(true)
}

// Lookup answers the credential of that name for the upstream at
// upstreamURL. ok is false when the file has no such entry (or there is no
// file); allowed is false when the entry is bound to other hosts. When the
// file changed into something unreadable, the entries last read stay in use
// and the error is returned alongside them, for the caller to log.
func (c *CredentialFile) Lookup(name, upstreamURL string) (cred gitops.Credential, ok, allowed bool, err error) {
	if c == nil || c.Path == "" {
		return gitops.Credential{}, false, false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.reloadLocked(false)
	e, ok := c.entries[name]
	if !ok {
		return gitops.Credential{}, false, false, err
	}
	return e.cred, true, e.allows(upstreamURL), err
}

// reloadLocked reads the file if it changed (or always, with force), the
// one way re-read files are watched (package watchfile); on an error the
// entries last read stay.
func (c *CredentialFile) reloadLocked(force bool) error {
	c.watch.Path = c.Path
	_, err := c.watch.Load(force, c.parseLocked)
	var re *watchfile.ReadError
	if errors.As(err, &re) {
		return &CredentialFileError{Path: c.Path, Reason: re.Reason}
	}
	return err
}

// parseLocked replaces the entries with the file's raw content.
func (c *CredentialFile) parseLocked(raw []byte) error {
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
	entries := make(map[string]storedCredential, len(parsed))
	for name, e := range parsed {
		if name == "" || e.Username == "" || e.Password == "" {
			return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q needs a name, a username and a password", name)}
		}
		for _, h := range e.Hosts {
			if h == "" || strings.ContainsAny(h, "/@ ") {
				return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q has a host that is not host[:port]", name)}
			}
		}
		entries[name] = storedCredential{cred: gitops.Credential{Username: e.Username, Password: e.Password}, hosts: e.Hosts}
	}
	c.entries = entries
	return nil
}
