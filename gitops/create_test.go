package gitops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestGroupCommit: many goroutines creating refs through one Repo share
// transactions; every ref is created exactly once, duplicates in a batch get
// the answer they would have got one after the other, and a ref that already
// exists elsewhere fails alone without failing its batch.
func TestGroupCommit(t *testing.T) {
	f := newFixture(t)
	f.git.Git(t, "update-ref", "refs/pipelines/5", string(f.c2)) // exists at the other SHA
	const refs, perRef = 10, 6
	type answer struct {
		sha     ObjectID
		created bool
		err     error
	}
	answers := make([][]answer, refs)
	var wg sync.WaitGroup
	for id := range refs {
		answers[id] = make([]answer, perRef)
		for k := range perRef {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sha := f.c1
				if k%2 == 1 {
					sha = f.c2
				}
				created, err := f.repo.Create(t.Context(), PipelineRef(int64(id+1)), sha)
				answers[id][k] = answer{sha, created, err}
			}()
		}
	}
	wg.Wait()
	onDisk := f.git.Refs(t, "refs/pipelines/")
	for id := range refs {
		final := ObjectID(onDisk[fmt.Sprintf("refs/pipelines/%d", id+1)])
		creations := 0
		for k, a := range answers[id] {
			var mismatch *MismatchingStateError
			switch {
			case a.created:
				creations++
				if a.sha != final {
					t.Errorf("ref %d: call %d created %s, ref is at %s", id, k, a.sha, final)
				}
			case a.err == nil:
				if a.sha != final {
					t.Errorf("ref %d: call %d told success for %s, ref is at %s", id, k, a.sha, final)
				}
			case errors.As(a.err, &mismatch):
				if a.sha == final || mismatch.Actual != final {
					t.Errorf("ref %d: call %d mismatch %v, ref is at %s", id, k, a.err, final)
				}
			default:
				t.Errorf("ref %d: call %d: %v", id, k, a.err)
			}
		}
		want := 1
		if id+1 == 5 {
			want = 0 // existed before
		}
		if creations != want {
			t.Errorf("ref %d: %d creations, want %d", id, creations, want)
		}
	}
	if ObjectID(onDisk["refs/pipelines/5"]) != f.c2 {
		t.Fatalf("the pre-existing ref moved")
	}
}

// TestLooseRefsGetPacked: past the threshold, created refs are packed in the
// background, with every value unchanged.
func TestLooseRefsGetPacked(t *testing.T) {
	f := newFixture(t)
	before := f.git.Refs(t, "refs/heads/")
	for id := int64(1); id <= packThreshold+20; id++ {
		if _, err := f.repo.Create(t.Context(), PipelineRef(id), f.c1); err != nil {
			t.Fatal(err)
		}
	}
	f.repo.packs.Wait()
	packed, err := os.ReadFile(filepath.Join(f.repo.Dir(), "packed-refs"))
	if err != nil {
		t.Fatalf("no packed-refs after %d creates: %v", packThreshold+20, err)
	}
	if !strings.Contains(string(packed), string(f.c1)+" refs/pipelines/1\n") {
		t.Fatalf("refs/pipelines/1 not packed:\n%.300s", packed)
	}
	refs := f.git.Refs(t, "refs/pipelines/")
	if len(refs) != packThreshold+20 {
		t.Fatalf("%d refs after packing, want %d", len(refs), packThreshold+20)
	}
	for name, sha := range f.git.Refs(t, "refs/heads/") {
		if before[name] != sha {
			t.Fatalf("packing moved %s", name)
		}
	}
}
