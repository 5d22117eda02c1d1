package refs

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

func TestCredentialFileIsReadAgainWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, `{"gl": {"username": "bot", "password": "first-token"}}`, t0)
	c := &CredentialFile{Path: path}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	cred, ok, err := c.Lookup("gl")
	if err != nil || !ok || cred.Username != "bot" || cred.Password != "first-token" {
		t.Fatalf("Lookup = %v %v %v", cred, ok, err)
	}
	if _, ok, _ := c.Lookup("gh"); ok {
		t.Fatal("Lookup of a name not in the file succeeded")
	}
	// Rotated: same size, another time.
	writeFile(t, path, `{"gl": {"username": "bot", "password": "other-token"}}`, t0.Add(time.Hour))
	if cred, _, _ := c.Lookup("gl"); cred.Password != "other-token" {
		t.Fatalf("after the file changed Lookup still says %q", cred.Password)
	}
	// Broken by its writer: the last good entries stay, the error says so
	// without quoting the file.
	writeFile(t, path, `{"gl": {"username": "bot", "password": third-token}}`, t0.Add(2*time.Hour))
	cred, ok, err = c.Lookup("gl")
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
	if _, ok, err := c.Lookup("gl"); ok || err != nil {
		t.Fatalf("nil file: %v %v", ok, err)
	}
	if _, ok, err := (&CredentialFile{}).Lookup("gl"); ok || err != nil {
		t.Fatalf("no path: %v %v", ok, err)
	}
}
