package mirrors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/strictjson"
	"github.com/refkeeper/refkeeper/watchfile"
)

// CredentialFile is the --credentials file: named upstream credentials,
// {"name": {"username": "…", "password": "…", "hosts": ["github.com"],
// "projects": ["acme/*"]}}. Each is bound to the hosts it is for (required):
// a credential goes only over https to those hosts, or over http to a host
// written "http://host[:port]", so whoever may register mirrors cannot
// point a credential at a server of their own; and to the projects whose
// mirrors may use it (project patterns; default every project). It is read
// again when its modification time or size changed since the last read
// (checked on every use: one stat), so a token rotated hourly by whatever
// writes the file is used from its next fetch on; a file that became
// unreadable or invalid leaves the entries last read in force. Secrets stay
// in memory: no method returns them in an error, and Credential values
// print without the password.
type CredentialFile struct {
	// Path is the file; empty: no credentials at all.
	Path string

	watch   watchfile.File
	mu      sync.Mutex
	entries map[string]storedCredential
}

// ModTime is the file's modification time now (zero: no file, or none
// readable). It is no secret: a failed clone's record keeps it, so that
// every replica sees the file was written since (retry.go).
func (c *CredentialFile) ModTime() time.Time {
	if c == nil || c.Path == "" {
		return time.Time{}
	}
	st, err := os.Stat(c.Path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// Digest answers a keyed digest (HMAC-SHA256 under key, hex) of the entry
// of that name as the file is now, read again if it changed: its
// username, password, hosts and projects, or that there is no such entry.
// Two reads digest alike only if the entry did not change, whatever else
// of the file did. Without the key it tells nothing of the credential, so
// it may be kept in a mirror's record; the credential itself never is.
func (c *CredentialFile) Digest(name string, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(name))
	mac.Write([]byte{0})
	if c != nil && c.Path != "" {
		c.mu.Lock()
		_ = c.reloadLocked(false) // unreadable: the entries last read, as Lookup uses them
		e, ok := c.entries[name]
		c.mu.Unlock()
		if ok {
			// encoding/json writes a struct's fields in one order: the
			// same entry, the same bytes.
			b, _ := json.Marshal(e.raw)
			mac.Write(b)
		}
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// storedCredential is one entry of the file.
type storedCredential struct {
	raw      credentialEntry // as written: what Digest covers
	cred     gitops.Credential
	hosts    []credentialHost
	projects []gitops.ProjectPattern
}

// credentialHost is one entry of "hosts": a host and port a credential may
// be sent to, over https, or over http when written "http://host[:port]".
type credentialHost struct {
	scheme string // https or http
	host   string // lower case, as url.URL.Hostname answers it
	port   string // never empty: the scheme's own when not written
}

// parseCredentialHost reads "host[:port]" or "http://host[:port]".
func parseCredentialHost(s string) (credentialHost, bool) {
	scheme, rest := "https", s
	if r, ok := strings.CutPrefix(s, "http://"); ok {
		scheme, rest = "http", r
	}
	if rest == "" || strings.ContainsAny(rest, "/@ ?#\\") {
		return credentialHost{}, false
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil || u.Hostname() == "" {
		return credentialHost{}, false
	}
	h := credentialHost{scheme: scheme, host: strings.ToLower(u.Hostname()), port: u.Port()}
	if h.port == "" {
		h.port = defaultPort(scheme)
	}
	return h, true
}

// allows reports whether the credential may be sent to the upstream at
// rawURL for project p: the URL's scheme, host and port are one of the
// entry's hosts, and a pattern of the entry covers p.
func (c storedCredential) allows(rawURL string, p gitops.ProjectName) bool {
	if !gitops.MatchAny(c.projects, p) {
		return false
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false // file:// asks for no credential: none is handed over
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	want := credentialHost{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: port}
	return slices.Contains(c.hosts, want)
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
	Projects []string `json:"projects"`
}

// Load reads the file now; cmd calls it at start-up so that a bad file
// stops the process with a clear line instead of failing the first fetch.
func (c *CredentialFile) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(true)
}

// Lookup answers the credential of that name for the upstream at
// upstreamURL of project p. ok is false when the file has no such entry (or
// there is no file); allowed is false when the entry is bound to other
// hosts, another scheme or other projects. When the file changed into
// something unreadable, the entries last read stay in use and the error is
// returned alongside them, for the caller to log.
func (c *CredentialFile) Lookup(name, upstreamURL string, p gitops.ProjectName) (cred gitops.Credential, ok, allowed bool, err error) {
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
	return e.cred, true, e.allows(upstreamURL, p), err
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
		reason := "is not a JSON object of {\"username\", \"password\", \"hosts\"} entries"
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			reason = fmt.Sprintf("is not valid JSON (at byte %d)", syn.Offset)
		}
		return &CredentialFileError{Path: c.Path, Reason: reason}
	}
	// encoding/json took "Hosts" for "hosts" and the last of two equal
	// keys: a file must say what it is read as.
	var keyErr *strictjson.KeyError
	if err := strictjson.CheckKeys(raw, &parsed); errors.As(err, &keyErr) {
		return &CredentialFileError{Path: c.Path, Reason: keyErr.Error()}
	}
	entries := make(map[string]storedCredential, len(parsed))
	for name, e := range parsed {
		if name == "" || e.Username == "" || e.Password == "" {
			return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q needs a name, a username and a password", name)}
		}
		if len(e.Hosts) == 0 {
			return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q needs \"hosts\": the hosts it may be sent to", name)}
		}
		stored := storedCredential{raw: e, cred: gitops.Credential{Username: e.Username, Password: e.Password}}
		for _, h := range e.Hosts {
			ch, ok := parseCredentialHost(h)
			if !ok {
				return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q has a host that is not host[:port] or http://host[:port]", name)}
			}
			stored.hosts = append(stored.hosts, ch)
		}
		if e.Projects == nil {
			stored.projects = []gitops.ProjectPattern{gitops.AllProjects}
		}
		for _, raw := range e.Projects {
			pat, err := gitops.ParseProjectPattern(raw)
			if err != nil {
				return &CredentialFileError{Path: c.Path, Reason: fmt.Sprintf("entry %q has a project pattern that is not \"*\", a project name or name/*", name)}
			}
			stored.projects = append(stored.projects, pat)
		}
		entries[name] = stored
	}
	c.entries = entries
	return nil
}
