package mirrors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// An entry bound to hosts is for those hosts only; one that names none is
// for any.
func TestCredentialBoundToHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeFile(t, path, `{"gh": {"username": "x-access-token", "password": "p1", "hosts": ["github.com", "git.example.com:8443"]},
		"any": {"username": "bot", "password": "p2"}}`, time.Now())
	c := &CredentialFile{Path: path}
	for _, tc := range []struct {
		name, upstream string
		allowed        bool
	}{
		{"gh", "https://github.com/acme/app.git", true},
		{"gh", "https://GitHub.com/acme/app.git", true},
		{"gh", "https://git.example.com:8443/acme/app.git", true},
		{"gh", "https://git.example.com/acme/app.git", false},
		{"gh", "https://attacker.example/r.git", false},
		{"gh", "https://github.com.attacker.example/r.git", false},
		{"any", "https://attacker.example/r.git", true},
	} {
		_, ok, allowed, err := c.Lookup(tc.name, tc.upstream)
		if err != nil || !ok || allowed != tc.allowed {
			t.Errorf("Lookup(%s, %s) = ok %v, allowed %v, %v; want allowed %v", tc.name, tc.upstream, ok, allowed, err, tc.allowed)
		}
	}
	writeFile(t, path, `{"gh": {"username": "u", "password": "p", "hosts": ["https://github.com"]}}`, time.Now().Add(time.Hour))
	var fe *CredentialFileError
	if err := c.Load(); !errors.As(err, &fe) {
		t.Errorf("a host with a scheme loaded: %v", err)
	}
}

func TestCredentialFileIsReadAgainWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, `{"gl": {"username": "bot", "password": "first-token"}}`, t0)
	c := &CredentialFile{Path: path}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	cred, ok, _, err := c.Lookup("gl", anyUpstream)
	if err != nil || !ok || cred.Username != "bot" || cred.Password != "first-token" {
		t.Fatalf("Lookup = %v %v %v", cred, ok, err)
	}
	if _, ok, _, _ := c.Lookup("gh", anyUpstream); ok {
		t.Fatal("Lookup of a name not in the file succeeded")
	}
	// Rotated: same size, another time.
	writeFile(t, path, `{"gl": {"username": "bot", "password": "other-token"}}`, t0.Add(time.Hour))
	if cred, _, _, _ := c.Lookup("gl", anyUpstream); cred.Password != "other-token" {
		t.Fatalf("after the file changed Lookup still says %q", cred.Password)
	}
	// Broken by its writer: the last good entries stay, the error says so
	// without quoting the file.
	writeFile(t, path, `{"gl": {"username": "bot", "password": third-token}}`, t0.Add(2*time.Hour))
	cred, ok, _, err = c.Lookup("gl", anyUpstream)
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
	if _, ok, _, err := c.Lookup("gl", anyUpstream); ok || err != nil {
		t.Fatalf("nil file: %v %v", ok, err)
	}
	if _, ok, _, err := (&CredentialFile{}).Lookup("gl", anyUpstream); ok || err != nil {
		t.Fatalf("no path: %v %v", ok, err)
	}
}
