package api_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMirrorDeleteWaitsForReplicas: with --redis-wait-replicas 1 and no
// replica, a mirror DELETE (which purges its pins' records) answers 503
// like every other state change; the deletion stands, its retry is 404.
func TestMirrorDeleteWaitsForReplicas(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "gitlab")
	if a := f.do(t, http.MethodPut, mirrorPath+"/pipelines/1/ref", `{"sha": "`+f.upstream.First+`"}`); a.status != http.StatusCreated {
		t.Fatalf("pin: %d %s", a.status, a.raw)
	}
	f.projects.Store.WaitReplicas = 1
	a := f.do(t, http.MethodDelete, mirrorPath, "")
	if a.status != http.StatusServiceUnavailable || a.errCode() != "unavailable" {
		t.Fatalf("mirror DELETE with 1 replica required, none present = %d %s, want 503 unavailable", a.status, a.raw)
	}
	if again := f.do(t, http.MethodDelete, mirrorPath, ""); again.status != http.StatusNotFound {
		t.Fatalf("its retry = %d %s, want 404 (the deletion stood)", again.status, again.raw)
	}
}

// TestDeleteOfUnknownProjectsLeavesNoFiles: a DELETE of a name that is no
// project answers 404 and leaves nothing on disk (no lock file per name).
func TestDeleteOfUnknownProjectsLeavesNoFiles(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	files := func() []string {
		var out []string
		filepath.WalkDir(f.root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".lock") {
				out = append(out, path)
			}
			return nil
		})
		return out
	}
	before := files()
	for i := range 20 {
		if a := f.do(t, http.MethodDelete, fmt.Sprintf("/api/v1/projects/invented%%2Fp%d", i), ""); a.status != http.StatusNotFound {
			t.Fatalf("DELETE of an unknown name = %d %s, want 404", a.status, a.raw)
		}
	}
	if after := files(); len(after) != len(before) {
		t.Fatalf("lock files: %d before, %d after 20 DELETEs of unknown names, e.g. %s", len(before), len(after), after[len(after)-1])
	}
}
