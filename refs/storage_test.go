package refs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A repository that cannot be read (here: packed-refs is not a file) is an
// operational failure: unavailable, safe to retry, never a 500 or a 404.
func TestUnreadableRepositoryIsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.pin(t, 1, e.c1)
	packed := filepath.Join(e.git.Dir, "packed-refs")
	if err := os.RemoveAll(packed); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(packed, 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.svc.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: 2, SHA: e.c1})
	var u *UnavailableError
	if !errors.As(err, &u) {
		t.Fatalf("Pin in an unreadable repository = %v (%T), want UnavailableError", err, err)
	}
	// (git itself cannot list refs now: look at the file.)
	if _, err := os.Stat(filepath.Join(e.git.Dir, "refs", "pipelines", "2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ref was written anyway: %v", err)
	}
}
