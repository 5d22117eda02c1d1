package gitops

import (
	"errors"
	"slices"
	"testing"
)

func TestAncestors(t *testing.T) {
	f := newFixture(t)
	other := ObjectID(f.git.Commit(t, "other", map[string]string{"b.txt": "b\n"}, "elsewhere"))

	got, err := f.repo.Ancestors(t.Context(), f.c2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []ObjectID{f.c2, f.c1}; !slices.Equal(got, want) {
		t.Errorf("Ancestors(c2) = %v, want %v", got, want)
	}
	if slices.Contains(got, other) {
		t.Errorf("Ancestors(c2) names %s, a commit of another branch", other)
	}
	if got, err := f.repo.Ancestors(t.Context(), f.c2, 1); err != nil || !slices.Equal(got, []ObjectID{f.c2}) {
		t.Errorf("Ancestors(c2, 1) = %v, %v; want only c2", got, err)
	}
	var nf *ObjectNotFoundError
	if _, err := f.repo.Ancestors(t.Context(), ObjectID("0123456789012345678901234567890123456789"), 10); !errors.As(err, &nf) {
		t.Errorf("Ancestors of a missing commit: %v, want ObjectNotFoundError", err)
	}
}
