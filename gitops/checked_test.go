package gitops

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockHeld reports whether git's lock file of ref exists now.
func lockHeld(tb testing.TB, repo *Repo, ref RefName) bool {
	tb.Helper()
	_, err := os.Stat(filepath.Join(repo.Dir(), filepath.FromSlash(string(ref))+".lock"))
	return err == nil
}

// gitCreateFails tries to create ref at id with the git CLI, as another
// writer would, and reports whether git refused.
func gitCreateFails(tb testing.TB, repo *Repo, ref RefName, id ObjectID) bool {
	tb.Helper()
	cmd := exec.Command("git", "--git-dir", repo.Dir(), "update-ref", string(ref), string(id))
	return cmd.Run() != nil
}

func TestDeleteBatchCheckedDecidesUnderLock(t *testing.T) {
	f := newFixture(t)
	f.git.PipelineRefs(t, 1, 3, string(f.c1))
	batch := []RefState{{Ref: PipelineRef(1), ID: f.c1}, {Ref: PipelineRef(2), ID: f.c1}, {Ref: PipelineRef(3), ID: f.c1}}
	calls := 0
	results, err := f.repo.DeleteBatchChecked(t.Context(), batch, func(updates []Update) ([]bool, error) {
		calls++
		keep := make([]bool, len(updates))
		for i, u := range updates {
			if !lockHeld(t, f.repo, u.Ref) {
				t.Errorf("check ran without the lock of %s", u.Ref)
			}
			// Another writer cannot move the ref while the check runs.
			if !gitCreateFails(t, f.repo, u.Ref, f.c2) {
				t.Errorf("another writer changed %s during the check", u.Ref)
			}
			keep[i] = u.Ref != PipelineRef(2)
		}
		return keep, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []DeleteOutcome{Deleted, Declined, Deleted}
	for i, r := range results {
		if r.Outcome != want[i] {
			t.Errorf("%s: %v, want %v", r.Ref, r.Outcome, want[i])
		}
	}
	// Refused once, then the rest prepared and checked again.
	if calls != 2 {
		t.Errorf("check called %d times, want 2", calls)
	}
	left := f.git.Refs(t, "refs/pipelines/")
	if len(left) != 1 || left["refs/pipelines/2"] != string(f.c1) {
		t.Fatalf("refs left = %v, want only the declined one, unchanged", left)
	}
	if lockHeld(t, f.repo, PipelineRef(2)) {
		t.Fatal("the declined ref's lock was left behind")
	}
}

func TestDeleteBatchCheckErrorChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.git.PipelineRefs(t, 1, 2, string(f.c1))
	boom := errors.New("redis down")
	results, err := f.repo.DeleteBatchChecked(t.Context(), []RefState{{Ref: PipelineRef(1), ID: f.c1}, {Ref: PipelineRef(2), ID: f.c1}},
		func([]Update) ([]bool, error) { return nil, boom })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		var cerr *CheckError
		if r.Outcome != Failed || !errors.As(r.Err, &cerr) || !errors.Is(r.Err, boom) {
			t.Errorf("%s: %v %v, want Failed with the check's error", r.Ref, r.Outcome, r.Err)
		}
	}
	if left := f.git.Refs(t, "refs/pipelines/"); len(left) != 2 {
		t.Fatalf("refs left = %v, want both", left)
	}
}

func TestCreateChecked(t *testing.T) {
	f := newFixture(t)
	ref := PipelineRef(9)
	created, err := f.repo.CreateChecked(t.Context(), ref, f.c1, func() (bool, error) { return false, nil })
	if err != nil || created {
		t.Fatalf("refused CreateChecked = %v, %v", created, err)
	}
	if _, ok := f.git.RefSHA(t, string(ref)); ok {
		t.Fatal("a refused create made the ref")
	}
	created, err = f.repo.CreateChecked(t.Context(), ref, f.c1, func() (bool, error) {
		if !lockHeld(t, f.repo, ref) {
			t.Error("allow ran without the ref's lock")
		}
		return true, nil
	})
	if err != nil || !created {
		t.Fatalf("allowed CreateChecked = %v, %v", created, err)
	}
	if sha, _ := f.git.RefSHA(t, string(ref)); sha != string(f.c1) {
		t.Fatalf("ref at %q, want %s", sha, f.c1)
	}
	// There already, at the same SHA: done; at another: a mismatch.
	created, err = f.repo.CreateChecked(t.Context(), ref, f.c1, func() (bool, error) { return true, nil })
	if err != nil || created {
		t.Fatalf("CreateChecked of an existing ref = %v, %v", created, err)
	}
	_, err = f.repo.CreateChecked(t.Context(), ref, f.c2, func() (bool, error) { return true, nil })
	var mismatch *MismatchingStateError
	if !errors.As(err, &mismatch) || mismatch.Actual != f.c1 {
		t.Fatalf("CreateChecked at another SHA = %v, want MismatchingStateError", err)
	}
}

// A create whose ref another writer holds does not take the ref it sees for
// its own: that writer may be deleting it. It waits for the lock (outside
// the shared writer) and creates the ref again after the delete.
func TestCreateWaitsForHeldLock(t *testing.T) {
	f := newFixture(t)
	f.root.LockTimeout = 10 * time.Second
	ref := PipelineRef(4)
	f.git.PipelineRefs(t, 4, 1, string(f.c1))
	// Another writer prepares the ref's delete: it holds the lock.
	deleter := exec.Command("git", "--git-dir", f.repo.Dir(), "update-ref", "--stdin")
	stdin, _ := deleter.StdinPipe()
	stdout, _ := deleter.StdoutPipe()
	if err := deleter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleter.Process.Kill(); _ = deleter.Wait() })
	fmt.Fprintf(stdin, "start\ndelete %s %s\nprepare\n", ref, f.c1)
	answers := bufio.NewReader(stdout)
	for _, want := range []string{"start: ok", "prepare: ok"} {
		if line, _ := answers.ReadString('\n'); strings.TrimSpace(line) != want {
			t.Fatalf("deleter: %q, want %q", line, want)
		}
	}
	type answer struct {
		created bool
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		created, err := f.repo.Create(t.Context(), ref, f.c1)
		done <- answer{created, err}
	}()
	select {
	case a := <-done:
		t.Fatalf("Create answered %+v while another writer held the ref's lock", a)
	case <-time.After(300 * time.Millisecond):
	}
	// Meanwhile the shared writer is not held up by that ref.
	if created, err := f.repo.Create(t.Context(), PipelineRef(5), f.c1); err != nil || !created {
		t.Fatalf("Create of another ref = %v, %v while one ref was locked", created, err)
	}
	fmt.Fprint(stdin, "commit\n")
	stdin.Close()
	if a := <-done; a.err != nil || !a.created {
		t.Fatalf("Create after the delete = %+v; want the ref created again", a)
	}
	if sha, ok := f.git.RefSHA(t, string(ref)); !ok || sha != string(f.c1) {
		t.Fatalf("ref = %q, %v; want it at %s", sha, ok, f.c1)
	}
}

// TestBegunTransactionOutlivesItsCaller: once git holds the refs' locks, a
// caller whose context ends does not cut the transaction short (some refs
// would be written and others not): what the check allowed is committed.
// A batch asked for after its context ended starts no git at all.
func TestBegunTransactionOutlivesItsCaller(t *testing.T) {
	f := newFixture(t)
	f.git.PipelineRefs(t, 1, 3, string(f.c1))
	batch := []RefState{{Ref: PipelineRef(1), ID: f.c1}, {Ref: PipelineRef(2), ID: f.c1}}
	ctx, cancel := context.WithCancel(t.Context())
	results, err := f.repo.DeleteBatchChecked(ctx, batch, func(updates []Update) ([]bool, error) {
		cancel() // the client goes away while git holds the locks
		return []bool{true, true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Outcome != Deleted {
			t.Errorf("%s: %v %v, want deleted", r.Ref, r.Outcome, r.Err)
		}
	}
	results, err = f.repo.DeleteBatch(ctx, []RefState{{Ref: PipelineRef(3), ID: f.c1}})
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Outcome != Failed || !errors.Is(results[0].Err, context.Canceled) {
		t.Errorf("delete after the context ended: %v %v, want failed with context.Canceled", results[0].Outcome, results[0].Err)
	}
	if left := f.git.Refs(t, "refs/pipelines/"); len(left) != 1 || left["refs/pipelines/3"] != string(f.c1) {
		t.Fatalf("refs left = %v, want only refs/pipelines/3", left)
	}
}
