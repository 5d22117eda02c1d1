package gitops

import (
	"errors"
	"testing"
	"time"
)

// TestUpdaterTransactions: one process runs transaction after transaction;
// Prepare holds the locks until Commit or Abort; Abort changes nothing.
func TestUpdaterTransactions(t *testing.T) {
	f := newFixture(t)
	log := observe(f)
	u, err := f.repo.NewUpdater(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	step := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Commit without Prepare.
	step("Start", u.Start())
	step("Create 1", u.Create(PipelineRef(1), f.c1))
	step("Create 2", u.Create(PipelineRef(2), f.c1))
	step("Commit", u.Commit())
	// Prepare, then Commit: the locks are held in between.
	step("Start", u.Start())
	step("Update 1", u.Update(PipelineRef(1), f.c2, f.c1))
	step("Prepare", u.Prepare())
	if !lockHeld(t, f.repo, PipelineRef(1)) || !gitCreateFails(t, f.repo, PipelineRef(1), f.c1) {
		t.Fatal("a prepared ref is not locked against other writers")
	}
	step("Commit", u.Commit())
	// Prepare, then Abort: unchanged, unlocked.
	step("Start", u.Start())
	step("Delete 2", u.Delete(PipelineRef(2), f.c1))
	step("Prepare", u.Prepare())
	step("Abort", u.Abort())
	if lockHeld(t, f.repo, PipelineRef(2)) {
		t.Fatal("Abort left the lock")
	}
	// Abort before Prepare: git never saw it.
	step("Start", u.Start())
	step("Delete 1", u.Delete(PipelineRef(1), f.c2))
	step("Abort", u.Abort())

	refs := f.git.Refs(t, "refs/pipelines/")
	if len(refs) != 2 || refs["refs/pipelines/1"] != string(f.c2) || refs["refs/pipelines/2"] != string(f.c1) {
		t.Fatalf("refs = %v; want 1 at %s and 2 at %s", refs, f.c2, f.c1)
	}
	if len(log.txs) != 2 || log.txs[0] != (loggedTx{"create", 2, nil}) || log.txs[1].refs != 1 || log.txs[1].err != nil {
		t.Fatalf("observed %+v; want the two committed transactions only", log.txs)
	}
}

// TestUpdaterCallOrder: calls out of order, and bad updates, are refused
// before git sees them, and the Updater stays usable.
func TestUpdaterCallOrder(t *testing.T) {
	f := newFixture(t)
	u, err := f.repo.NewUpdater(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var state *UpdaterStateError
	for name, err := range map[string]error{
		"Create before Start":  u.Create(PipelineRef(1), f.c1),
		"Prepare before Start": u.Prepare(),
		"Commit before Start":  u.Commit(),
		"Abort before Start":   u.Abort(),
	} {
		if !errors.As(err, &state) {
			t.Errorf("%s = %v, want UpdaterStateError", name, err)
		}
	}
	if err := u.Start(); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(); !errors.As(err, &state) {
		t.Errorf("Start twice = %v, want UpdaterStateError", err)
	}
	var forbidden *ForbiddenRefError
	if err := u.Create("refs/heads/main", f.c1); !errors.As(err, &forbidden) {
		t.Errorf("Create of refs/heads/main = %v, want ForbiddenRefError", err)
	}
	var invalid *InvalidUpdateError
	if err := u.Create(PipelineRef(1), f.c1); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(PipelineRef(1), f.c1); !errors.As(err, &invalid) {
		t.Errorf("a ref twice = %v, want InvalidUpdateError", err)
	}
	if err := u.Update(PipelineRef(2), ZeroID, ZeroID); !errors.As(err, &invalid) {
		t.Errorf("zero to zero = %v, want InvalidUpdateError", err)
	}
	if err := u.Commit(); err != nil {
		t.Fatalf("Commit after refused calls: %v", err)
	}
	if sha, ok := f.git.RefSHA(t, "refs/pipelines/1"); !ok || sha != string(f.c1) {
		t.Fatalf("refs/pipelines/1 = %q, %v", sha, ok)
	}
}

// TestUpdaterTypedErrors: git's refusals come back as typed errors, and the
// Updater is closed after one.
func TestUpdaterTypedErrors(t *testing.T) {
	f := newFixture(t)
	f.root.LockTimeout = 10 * time.Millisecond
	f.git.Git(t, "update-ref", "refs/pipelines/1", string(f.c1))
	missing := ObjectID("1234567890123456789012345678901234567890")
	writeLock(t, f.repo.lockPath(PipelineRef(3)), 0)
	tests := []struct {
		name   string
		update Update
		want   func(error) bool
	}{
		{"create of an existing ref", Update{PipelineRef(1), f.c2, ZeroID}, func(err error) bool {
			var e *MismatchingStateError
			return errors.As(err, &e) && e.Ref == PipelineRef(1) && e.Expected == ZeroID && e.Actual == f.c1
		}},
		{"delete of a moved ref", Update{PipelineRef(1), ZeroID, f.c2}, func(err error) bool {
			var e *MismatchingStateError
			return errors.As(err, &e) && e.Expected == f.c2 && e.Actual == f.c1
		}},
		{"delete of a missing ref", Update{PipelineRef(2), ZeroID, f.c1}, func(err error) bool {
			var e *MismatchingStateError
			return errors.As(err, &e) && e.Ref == PipelineRef(2) && e.Expected == f.c1 && e.Actual == ""
		}},
		{"a locked ref", Update{PipelineRef(3), f.c1, ZeroID}, func(err error) bool {
			var e *LockedError
			return errors.As(err, &e) && e.Ref == PipelineRef(3) && e.Path == f.repo.lockPath(PipelineRef(3)) && IsTransient(err)
		}},
		{"a missing object", Update{PipelineRef(4), missing, ZeroID}, func(err error) bool {
			var e *ObjectNotFoundError
			return errors.As(err, &e) && e.ID == missing
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.repo.NewUpdater(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if err := u.Start(); err != nil {
				t.Fatal(err)
			}
			if err := u.Update(tt.update.Ref, tt.update.New, tt.update.Old); err != nil {
				t.Fatal(err)
			}
			err = u.Prepare()
			if !tt.want(err) {
				t.Fatalf("Prepare = %v (%T)", err, err)
			}
			var state *UpdaterStateError
			if again := u.Start(); !errors.As(again, &state) || !errors.Is(again, err) {
				t.Fatalf("Start after a refusal = %v, want UpdaterStateError wrapping it", again)
			}
		})
	}
	if sha, _ := f.git.RefSHA(t, "refs/pipelines/1"); sha != string(f.c1) {
		t.Fatalf("refs/pipelines/1 moved to %s", sha)
	}
}
