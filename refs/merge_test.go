package refs

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/testdata"
)

// mergeEnv is env with refs/merge-requests/12/head at the feature branch,
// as GitLab keeps it.
func newMergeEnv(t *testing.T) (*env, ObjectID) {
	t.Helper()
	e := newEnv(t)
	head, _ := e.git.RefSHA(t, "refs/heads/feature")
	e.git.Git(t, "update-ref", "refs/merge-requests/12/head", head)
	return e, ObjectID(head)
}

// recompute is the merge as the git CLI makes it with the default identity.
func (e *env) recompute(t *testing.T, source, target ObjectID, mode string) ObjectID {
	t.Helper()
	return ObjectID(e.git.RecomputeMerge(t, string(source), string(target), mode, testdata.DefaultMergeName, testdata.DefaultMergeEmail))
}

// snapshot is everything a failed pin must leave as it was.
type snapshot struct {
	refs    map[string]string
	keys    []string
	objects []string
}

func (e *env) snapshot(t *testing.T) snapshot {
	t.Helper()
	keys := e.redis.Client(t).Keys(t.Context(), "*").Val()
	slices.Sort(keys)
	return snapshot{
		refs:    e.git.Refs(t, "refs/"),
		keys:    keys,
		objects: strings.Fields(e.git.Git(t, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")),
	}
}

func (e *env) assertUnchanged(t *testing.T, before snapshot) {
	t.Helper()
	after := e.snapshot(t)
	if !maps.Equal(before.refs, after.refs) {
		t.Errorf("refs changed: %v -> %v", before.refs, after.refs)
	}
	if !slices.Equal(before.keys, after.keys) {
		t.Errorf("Redis keys changed: %v -> %v", before.keys, after.keys)
	}
	if !slices.Equal(before.objects, after.objects) {
		t.Errorf("objects written: %d -> %d", len(before.objects), len(after.objects))
	}
}

func TestPinComputedMergeOfMergeRequestHead(t *testing.T) {
	e, head := newMergeEnv(t)
	ctx := t.Context()
	req := PinRequest{Project: e.p, PipelineID: 7, MergeRequestIID: 12, Merge: &MergeInput{Target: "main"}}
	pin, created, err := e.svc.Pin(ctx, req)
	if err != nil || !created {
		t.Fatalf("Pin = %+v, %v, %v; want created", pin, created, err)
	}
	want := e.recompute(t, head, e.c2, "merge")
	if pin.SHA != want {
		t.Fatalf("pinned %s, git merge-tree + commit-tree give %s", pin.SHA, want)
	}
	if sha, ok := e.refSHA(t, 7); !ok || sha != want {
		t.Fatalf("refs/pipelines/7 = %s, %v; want %s", sha, ok, want)
	}
	wantMerge := Merge{SourceSHA: head, TargetSHA: e.c2, Mode: gitops.MergeModeMerge, Identity: gitops.DefaultIdentity}
	if pin.Merge == nil || *pin.Merge != wantMerge || pin.MergeRequestIID != 12 {
		t.Fatalf("pin = %+v, merge %+v; want %+v", pin, pin.Merge, wantMerge)
	}
	if got, err := e.svc.Get(ctx, e.p, 7); err != nil || got.Merge == nil || *got.Merge != wantMerge {
		t.Fatalf("Get = %+v, %v; want the merge inputs kept in the record", got, err)
	}

	// The same inputs again, also from another replica over the same
	// repository and Redis, and named otherwise (SHA, branch, full ref).
	other := &Service{Repos: &gitops.Root{Dir: e.svc.Repos.Dir}, Store: &Store{Client: e.redis.Client(t)},
		Policy: e.svc.Policy, Clock: e.clock}
	t.Cleanup(other.Repos.Close)
	for _, again := range []struct {
		svc *Service
		in  MergeInput
	}{
		{e.svc, MergeInput{Target: "main"}},
		{other, MergeInput{Target: "main", Mode: gitops.MergeModeMerge}},
		{other, MergeInput{Source: "feature", Target: "refs/heads/main"}},
		{e.svc, MergeInput{Source: string(head), Target: string(e.c2)}},
	} {
		r := req
		r.Merge = &again.in
		pin, created, err := again.svc.Pin(ctx, r)
		if err != nil || created || pin.SHA != want {
			t.Errorf("Pin(%+v) again = %s, created %v, %v; want %s, not created", again.in, pin.SHA, created, err, want)
		}
	}

	// Other inputs for the same pipeline: a conflict, nothing changes.
	before := e.snapshot(t)
	r := req
	r.Merge = &MergeInput{Target: "main", Mode: gitops.MergeModeSquash}
	var conflict *RefConflictError
	if _, _, err := e.svc.Pin(ctx, r); !errors.As(err, &conflict) {
		t.Fatalf("Pin with mode squash = %v, want RefConflictError", err)
	}
	// The squash commit itself is written (it is computed before the
	// conflict shows); refs and records stay.
	before.objects = e.snapshot(t).objects
	e.assertUnchanged(t, before)

	// Squash on another pipeline: one parent, the same tree.
	r.PipelineID = 8
	squash, created, err := e.svc.Pin(ctx, r)
	if err != nil || !created || squash.SHA != e.recompute(t, head, e.c2, "squash") {
		t.Fatalf("squash pin = %+v, %v, %v", squash, created, err)
	}
	if e.git.TreeOf(t, string(squash.SHA)) != e.git.TreeOf(t, string(want)) {
		t.Error("squash and merge have different trees")
	}
}

func TestPinComputedMergeConflictWritesNothing(t *testing.T) {
	e, _ := newMergeEnv(t)
	ctx := t.Context()
	head := e.git.Commit(t, "feature", map[string]string{"app.txt": "feature's\n"}, "feature edits app.txt")
	e.git.Git(t, "update-ref", "refs/merge-requests/12/head", head)
	before := e.snapshot(t)
	_, _, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 7, MergeRequestIID: 12, Merge: &MergeInput{Target: "main"}})
	var conflict *MergeConflictError
	if !errors.As(err, &conflict) || !slices.Equal(conflict.Paths, []string{"app.txt"}) {
		t.Fatalf("Pin = %v, want MergeConflictError in app.txt", err)
	}
	e.assertUnchanged(t, before)
	var nf *PinNotFoundError
	if _, err := e.svc.Get(ctx, e.p, 7); !errors.As(err, &nf) {
		t.Errorf("Get after a conflict = %v, want no pin", err)
	}
}

func TestPinComputedMergeBadInputs(t *testing.T) {
	e, head := newMergeEnv(t)
	ctx := t.Context()
	missing := "1234567890123456789012345678901234567890"
	tree := e.git.TreeOf(t, string(e.c1))
	tests := []struct {
		name string
		req  PinRequest
		want any
	}{
		{"target branch missing", PinRequest{Merge: &MergeInput{Source: "feature", Target: "nope"}}, &RefNotFoundError{}},
		{"source ref missing", PinRequest{Merge: &MergeInput{Source: "refs/heads/gone", Target: "main"}}, &RefNotFoundError{}},
		{"no head ref for the merge request", PinRequest{MergeRequestIID: 13, Merge: &MergeInput{Target: "main"}}, &RefNotFoundError{}},
		{"target commit missing", PinRequest{Merge: &MergeInput{Source: string(head), Target: missing}}, &CommitNotFoundError{}},
		{"target is a tree", PinRequest{Merge: &MergeInput{Source: string(head), Target: tree}}, &CommitNotFoundError{}},
		{"source omitted without merge request", PinRequest{Merge: &MergeInput{Target: "main"}}, &InvalidInputError{}},
		{"bad ref name", PinRequest{Merge: &MergeInput{Source: "a..b", Target: "main"}}, &InvalidInputError{}},
		{"bad mode", PinRequest{Merge: &MergeInput{Source: "feature", Target: "main", Mode: "rebase"}}, &InvalidInputError{}},
		{"sha and merge", PinRequest{SHA: e.c1, Merge: &MergeInput{Source: "feature", Target: "main"}}, &InvalidInputError{}},
	}
	before := e.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Project, tt.req.PipelineID = e.p, 9
			_, _, err := e.svc.Pin(ctx, tt.req)
			if !sameMergeType(err, tt.want) {
				t.Fatalf("Pin = %v, want %T", err, tt.want)
			}
		})
	}
	e.assertUnchanged(t, before)
}

func sameMergeType(err error, want any) bool {
	var nr *RefNotFoundError
	if _, ok := want.(*RefNotFoundError); ok {
		return errors.As(err, &nr)
	}
	return err != nil && sameType(err, want)
}

func TestSweepComputesVanishedMergeCommitAgain(t *testing.T) {
	e, head := newMergeEnv(t)
	ctx := t.Context()
	pin, _, err := e.svc.Pin(ctx, PinRequest{Project: e.p, PipelineID: 7, MergeRequestIID: 12, Merge: &MergeInput{Target: "main"}})
	if err != nil {
		t.Fatal(err)
	}
	// The ref is lost and git's gc takes the commit with it.
	e.git.Git(t, "update-ref", "-d", "refs/pipelines/7")
	e.git.Git(t, "prune", "--expire=now")
	if _, err := e.git.GitErr("cat-file", "-e", string(pin.SHA)); err == nil {
		t.Fatal("the merge commit survived the prune")
	}
	// A pin by SHA whose commit is gone stays gone: nothing to make it from.
	lost := e.git.Commit(t, "lost", map[string]string{"lost.txt": "lost\n"}, "lost")
	e.pin(t, 8, ObjectID(lost))
	e.git.Git(t, "update-ref", "-d", "refs/pipelines/8")
	e.git.Git(t, "update-ref", "-d", "refs/heads/lost")
	e.git.Git(t, "prune", "--expire=now")
	e.clock.Advance(time.Second)

	res, err := e.svc.SweepAll(ctx)
	if err != nil || res.Restored != 1 {
		t.Fatalf("sweep = %+v, %v; want 1 restored", res, err)
	}
	if sha, ok := e.refSHA(t, 7); !ok || sha != pin.SHA {
		t.Fatalf("refs/pipelines/7 = %s, %v; want the merge %s again", sha, ok, pin.SHA)
	}
	if got := e.recompute(t, head, e.c2, "merge"); got != pin.SHA {
		t.Fatalf("restored commit %s is not git's recomputation %s", pin.SHA, got)
	}
	if _, ok := e.refSHA(t, 8); ok {
		t.Error("a pin by SHA whose commit is gone got a ref")
	}
}

// Many clients of two replicas pin the same computed merge at once: one
// creates the ref, every other answers the same commit.
func TestPinComputedMergeConcurrentReplicas(t *testing.T) {
	e, head := newMergeEnv(t)
	other := &Service{Repos: &gitops.Root{Dir: e.svc.Repos.Dir}, Store: &Store{Client: e.redis.Client(t)},
		Policy: e.svc.Policy, Clock: e.clock}
	t.Cleanup(other.Repos.Close)
	const clients = 16
	var wg sync.WaitGroup
	results := make(chan error, clients)
	created := make(chan bool, clients)
	shas := make(chan ObjectID, clients)
	for i := range clients {
		svc := e.svc
		if i%2 == 1 {
			svc = other
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pin, c, err := svc.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: 7, MergeRequestIID: 12, Merge: &MergeInput{Target: "main"}})
			results <- err
			created <- c
			shas <- pin.SHA
		}()
	}
	wg.Wait()
	close(results)
	close(created)
	close(shas)
	// Recomputed only now, so the commit was not there before the pins.
	want := e.recompute(t, head, e.c2, "merge")
	for sha := range shas {
		if sha != "" && sha != want {
			t.Errorf("pinned %s, want %s", sha, want)
		}
	}
	for err := range results {
		if err != nil {
			t.Error(err)
		}
	}
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d calls created the ref, want 1", n)
	}
	assertNoQuarantine(t, e.git.Dir)
}

func assertNoQuarantine(t *testing.T, dir string) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(dir, "objects", "tmp_objdir*")); len(left) > 0 {
		t.Errorf("temporary object directories left behind: %v", left)
	}
}

// A merge git could not run is transient: unavailable, nothing written.
func TestPinComputedMergeGitFailureIsUnavailable(t *testing.T) {
	e, _ := newMergeEnv(t)
	broken := &Service{Repos: &gitops.Root{Dir: e.svc.Repos.Dir, GitBinary: filepath.Join(t.TempDir(), "no-git")},
		Store: e.svc.Store, Policy: e.svc.Policy, Clock: e.clock}
	t.Cleanup(broken.Repos.Close)
	before := e.snapshot(t)
	_, _, err := broken.Pin(t.Context(), PinRequest{Project: e.p, PipelineID: 7, MergeRequestIID: 12, Merge: &MergeInput{Target: "main"}})
	if !IsUnavailable(err) {
		t.Fatalf("Pin with git missing = %v, want unavailable", err)
	}
	e.assertUnchanged(t, before)
	assertNoQuarantine(t, e.git.Dir)
}
