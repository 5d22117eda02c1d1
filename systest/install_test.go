package systest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall: `make install` puts refkeeper where PATH finds it, and
// says so; with a PREFIX not on PATH it says how to add it.
func TestMakeInstall(t *testing.T) {
	prefix := t.TempDir()
	bin := filepath.Join(prefix, "bin")
	for _, onPath := range []bool{false, true} {
		path := os.Getenv("PATH")
		if onPath {
			path = bin + string(os.PathListSeparator) + path
		}
		cmd := exec.Command("make", "install", "PREFIX="+prefix)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		want := "refkeeper installed: " + bin + "/refkeeper"
		if !onPath {
			want = "which is not on PATH: export PATH=\"" + bin + ":$PATH\""
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("make install (on PATH: %v) does not say %q:\n%s", onPath, want, out)
		}
	}
	// Found by name through PATH, as a user types it.
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command("refkeeper", "version")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "refkeeper ") {
		t.Fatalf("refkeeper version from PATH: %v %q", err, out)
	}
	if st, err := os.Stat(filepath.Join(bin, "refkeeper")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v %v", err, st)
	}
}
