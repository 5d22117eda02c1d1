package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Shared creates the secret once, mode 0600, and every later call (another
// replica on the same root) reads that one; a file others may read is
// refused rather than used.
func TestSharedCreatesOnceAndRefusesAReadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	first, created, err := Shared(path)
	if err != nil || !created || len(first) < 43 {
		t.Fatalf("first Shared = %q %v %v, want a new 32-byte secret", first, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != Mode {
		t.Fatalf("secret file: %v %v, want mode %04o", st, err, Mode)
	}
	again, created, err := Shared(path)
	if err != nil || created || again != first {
		t.Errorf("second Shared = %q %v %v, want the first secret kept", again, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Shared(path); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Errorf("Shared of a file others may read: %v, want a refusal", err)
	}
}
