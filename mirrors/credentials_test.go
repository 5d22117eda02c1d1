package mirrors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

func writeFile(t *testing.T, path, body string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

const anyUpstream = "https://git.example.com/group/app.git"

// An entry is for its hosts alone, over https unless a host is written
// http://host[:port], and for the projects its patterns cover.
func TestCredentialBoundToHostsAndProjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeFile(t, path, `{"gh": {"username": "x-access-token", "password": "p1", "hosts": ["github.com", "git.example.com:8443"]},
		"acme": {"username": "bot", "password": "p2", "hosts": ["github.com"], "projects": ["acme/*", "tools/ci"]},
		"plain": {"username": "bot", "password": "p3", "hosts": ["http://git.lan:8080", "http://git.lan"]}}`, time.Now())
	c := &CredentialFile{Path: path}
	for _, tc := range []struct {
		name, upstream, project string
		allowed                 bool
	}{
		{"gh", "https://github.com/acme/app.git", "acme/app", true},
		{"gh", "https://GitHub.com/acme/app.git", "acme/app", true},
		{"gh", "https://github.com:443/acme/app.git", "acme/app", true},
		{"gh", "https://git.example.com:8443/acme/app.git", "acme/app", true},
		{"gh", "https://git.example.com/acme/app.git", "acme/app", false},
		{"gh", "https://attacker.example/r.git", "acme/app", false},
		{"gh", "https://github.com.attacker.example/r.git", "acme/app", false},
		{"gh", "https://github.com:444/acme/app.git", "acme/app", false},
		// a host without a scheme is https only
		{"gh", "http://github.com/acme/app.git", "acme/app", false},
		{"gh", "file:///srv/git/app.git", "acme/app", false},
		{"acme", "https://github.com/acme/app.git", "acme/app", true},
		{"acme", "https://github.com/acme/app.git", "acme/deep/app", true},
		{"acme", "https://github.com/acme/app.git", "tools/ci", true},
		{"acme", "https://github.com/acme/app.git", "other/app", false},
		{"acme", "https://github.com/acme/app.git", "acme", false},
		{"acme", "https://github.com/acme/app.git", "tools/ci-evil", false},
		{"plain", "http://git.lan:8080/app.git", "x", true},
		{"plain", "http://git.lan/app.git", "x", true},
		{"plain", "http://git.lan:8081/app.git", "x", false},
		{"plain", "https://git.lan:8080/app.git", "x", false},
	} {
		_, ok, allowed, err := c.Lookup(tc.name, tc.upstream, gitops.ProjectName(tc.project))
		if err != nil || !ok || allowed != tc.allowed {
			t.Errorf("Lookup(%s, %s, %s) = ok %v, allowed %v, %v; want allowed %v", tc.name, tc.upstream, tc.project, ok, allowed, err, tc.allowed)
		}
	}
}

// A file with an entry that names no hosts, a host that is not
// [http://]host[:port] or a bad project pattern does not load; loaded
// before, its last good entries stay in force.
func TestCredentialFileRefusesUnboundEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	good := `{"gh": {"username": "u", "password": "good", "hosts": ["github.com"]}}`
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, bad := range []string{
		`{"gh": {"username": "u", "password": "p"}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": []}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["https://github.com"]}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["github.com/acme"]}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["user@github.com"]}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["github.com"], "projects": ["../x"]}}`,
		// Read case-insensitively, these would send the password anywhere.
		`{"gh": {"username": "u", "password": "p", "hosts": ["github.com"], "Hosts": ["evil.example"]}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["github.com"], "hosts": ["evil.example"]}}`,
		`{"gh": {"username": "u", "password": "p", "hosts": ["github.com"]}, "gh": {"username": "u", "password": "p", "hosts": ["evil.example"]}}`,
	} {
		writeFile(t, path, bad, t0)
		var fe *CredentialFileError
		if err := (&CredentialFile{Path: path}).Load(); !errors.As(err, &fe) {
			t.Errorf("%s loaded: %v", bad, err)
		}
		c := &CredentialFile{Path: path}
		writeFile(t, path, good, t0.Add(time.Duration(i)*time.Minute))
		if err := c.Load(); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, bad, t0.Add(time.Hour))
		cred, ok, allowed, err := c.Lookup("gh", "https://github.com/acme/app.git", "acme/app")
		if !errors.As(err, &fe) || !ok || !allowed || cred.Password != "good" {
			t.Errorf("re-read of %s: Lookup = %v %v %v %v, want the last good entry and the error", bad, cred, ok, allowed, err)
		}
	}
}

func TestCredentialFileIsReadAgainWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, `{"gl": {"username": "bot", "password": "first-token", "hosts": ["git.example.com"]}}`, t0)
	c := &CredentialFile{Path: path}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	cred, ok, _, err := c.Lookup("gl", anyUpstream, "group/app")
	if err != nil || !ok || cred.Username != "bot" || cred.Password != "first-token" {
		t.Fatalf("Lookup = %v %v %v", cred, ok, err)
	}
	if _, ok, _, _ := c.Lookup("gh", anyUpstream, "group/app"); ok {
		t.Fatal("Lookup of a name not in the file succeeded")
	}
	// Rotated: same size, another time.
	writeFile(t, path, `{"gl": {"username": "bot", "password": "other-token", "hosts": ["git.example.com"]}}`, t0.Add(time.Hour))
	if cred, _, _, _ := c.Lookup("gl", anyUpstream, "group/app"); cred.Password != "other-token" {
		t.Fatalf("after the file changed Lookup still says %q", cred.Password)
	}
	// Broken by its writer: the last good entries stay, the error says so
	// without quoting the file.
	writeFile(t, path, `{"gl": {"username": "bot", "password": third-token, "hosts": ["git.example.com"]}}`, t0.Add(2*time.Hour))
	cred, ok, _, err = c.Lookup("gl", anyUpstream, "group/app")
	var fe *CredentialFileError
	if !errors.As(err, &fe) || !ok || cred.Password != "other-token" {
		t.Fatalf("broken file: Lookup = %v %v %v, want the last good entry and a CredentialFileError", cred, ok, err)
	}
	if strings.Contains(err.Error(), "third") {
		t.Errorf("the error quotes the file: %v", err)
	}
	if s := cred.String() + " " + strings.TrimSpace(strings.Join([]string{cred.GoString()}, "")); strings.Contains(s, "other-token") {
		t.Errorf("a Credential prints its password: %s", s)
	}
}

func TestNoCredentialFile(t *testing.T) {
	var c *CredentialFile
	if _, ok, _, err := c.Lookup("gl", anyUpstream, "group/app"); ok || err != nil {
		t.Fatalf("nil file: %v %v", ok, err)
	}
	if _, ok, _, err := (&CredentialFile{}).Lookup("gl", anyUpstream, "group/app"); ok || err != nil {
		t.Fatalf("no path: %v %v", ok, err)
	}
}

// An entry's digest changes with the entry alone: another entry rotated or
// the same content written again digests alike; the entry's password
// changed, the entry gone or another key does not. The digest holds
// neither the password nor its plain SHA-256.
func TestCredentialDigestFollowsTheEntryAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	c := &CredentialFile{Path: path}
	key, other := []byte(strings.Repeat("k", 32)), []byte(strings.Repeat("o", 32))
	at := time.Now()
	write := func(gh, acme string) {
		at = at.Add(time.Second)
		body := `{"gh": {"username": "x", "password": "` + gh + `", "hosts": ["github.com"]}`
		if acme != "" {
			body += `, "acme": {"username": "bot", "password": "` + acme + `", "hosts": ["github.com"]}`
		}
		writeFile(t, path, body+`}`, at)
	}
	write("p1", "a1")
	d0 := c.Digest("gh", key)
	write("p1", "a2")
	if d := c.Digest("gh", key); d != d0 {
		t.Errorf("another entry rotated: digest %s, want %s", d, d0)
	}
	if strings.Contains(d0, "p1") || c.Digest("gh", other) == d0 {
		t.Errorf("digest %s holds the password or does not depend on the key", d0)
	}
	write("p2", "a2")
	d1 := c.Digest("gh", key)
	if d1 == d0 {
		t.Errorf("the entry's password changed: digest unchanged")
	}
	dA := c.Digest("acme", key)
	if dA == d1 {
		t.Errorf("two entries digest alike")
	}
	write("p2", "")
	if d := c.Digest("acme", key); d == dA {
		t.Errorf("an entry removed digests like it did when present")
	}
}
