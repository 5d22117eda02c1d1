package gitops

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

func gitConfig(t *testing.T, dir, key string) string {
	t.Helper()
	out, _ := exec.Command("git", "--git-dir", dir, "config", "--get", key).Output()
	return strings.TrimSpace(string(out))
}

func TestStagedMirrorIsNoProjectUntilPublished(t *testing.T) {
	f := newFixture(t) // the local project group/app
	ctx := context.Background()
	name := ProjectName("mirrors/one")
	cfg := MirrorConfig{Upstream: "https://git.example.com/one.git", Host: "gitlab", Credential: "bot"}
	if created, err := f.root.Stage(ctx, name, cfg); err != nil || !created {
		t.Fatalf("Stage: %v %v", created, err)
	}
	if created, err := f.root.Stage(ctx, name, MirrorConfig{Upstream: "https://other"}); err != nil || created {
		t.Fatalf("Stage again: %v %v, want an untouched existing stage", created, err)
	}
	staged := f.root.stagingPath(name)
	if got := gitConfig(t, staged, "refkeeper.upstream"); got != cfg.Upstream {
		t.Errorf("staged refkeeper.upstream = %q, want %q (the second Stage must change nothing)", got, cfg.Upstream)
	}
	if got := gitConfig(t, staged, "refkeeper.state"); got != "cloning" {
		t.Errorf("refkeeper.state = %q, want cloning", got)
	}
	names, err := f.root.Projects(ctx)
	if err != nil || len(names) != 1 || names[0] != "group/app" {
		t.Errorf("Projects = %v %v, want only the local project", names, err)
	}
	if _, err := f.root.RepoPath(name); err == nil {
		t.Error("RepoPath finds a staged mirror")
	}
	pi, err := f.root.Project(name)
	if err != nil || !pi.Staged || !pi.Mirror || pi.State != StagedCloning || pi.Config != cfg {
		t.Fatalf("Project(staged) = %+v %v", pi, err)
	}
	if !f.root.IsStaged(name) || f.root.IsStaged("group/app") {
		t.Error("IsStaged is wrong")
	}
	if err := f.root.Publish(name); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	pi, err = f.root.Project(name)
	if err != nil || pi.Staged || !pi.Mirror || pi.Config != cfg {
		t.Fatalf("Project(published) = %+v %v", pi, err)
	}
	if got := gitConfig(t, pi.Dir, "refkeeper.state"); got != "" {
		t.Errorf("a published mirror still says state %q", got)
	}
	if _, err := f.root.Stage(ctx, name, cfg); !errors.As(err, new(*ProjectExistsError)) {
		t.Errorf("Stage over a published mirror: %v, want ProjectExistsError", err)
	}

	if err := f.root.RemoveMirror("group/app"); !errors.As(err, new(*NotMirrorError)) {
		t.Errorf("RemoveMirror(local) = %v, want NotMirrorError", err)
	}
	if err := f.root.RemoveMirror(name); err != nil {
		t.Fatalf("RemoveMirror: %v", err)
	}
	if _, err := os.Stat(pi.Dir); !os.IsNotExist(err) {
		t.Errorf("the mirror is still on disk (%v)", err)
	}
	if err := f.root.RemoveMirror(name); !errors.As(err, new(*ProjectNotFoundError)) {
		t.Errorf("RemoveMirror twice = %v, want ProjectNotFoundError", err)
	}
	if _, err := f.root.Project("group/app"); err != nil {
		t.Errorf("the local project after all this: %v", err)
	}
}

func TestPublishNeverTakesALocalProjectsName(t *testing.T) {
	f := newFixture(t)
	name := ProjectName("mirrors/late")
	if _, err := f.root.Stage(context.Background(), name, MirrorConfig{Upstream: "https://x/y.git", Host: "generic"}); err != nil {
		t.Fatal(err)
	}
	// Something else makes a local project of that name meanwhile.
	local := testdata.NewBareRepo(t, f.root.Dir, string(name))
	if err := f.root.Publish(name); !errors.As(err, new(*ProjectExistsError)) {
		t.Fatalf("Publish over a local project = %v, want ProjectExistsError", err)
	}
	if got := gitConfig(t, local.Dir, "refkeeper.upstream"); got != "" {
		t.Errorf("the local project got a mirror's record: %q", got)
	}
	if !f.root.IsStaged(name) {
		t.Error("the staged mirror is gone after a refused Publish")
	}
}

// A reader that asks about a mirror while its clone is published (renamed
// into place) finds it staged or in place, never gone and never an error.
func TestProjectDuringPublish(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cfg := MirrorConfig{Upstream: "https://git.example.com/one.git", Host: "gitlab"}
	for round := 0; round < 50; round++ {
		name := ProjectName("mirrors/m" + strings.Repeat("x", round%5) + string(rune('a'+round%26)) + string(rune('a'+round/26)))
		if _, err := f.root.Stage(ctx, name, cfg); err != nil {
			t.Fatalf("Stage: %v", err)
		}
		published := make(chan error, 1)
		go func() { published <- f.root.Publish(name) }()
		for done := false; !done; {
			select {
			case err := <-published:
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
				done = true
			default:
			}
			if pi, err := f.root.Project(name); err != nil || pi.Config != cfg {
				t.Fatalf("round %d: Project during Publish = %+v %v", round, pi, err)
			}
		}
	}
}

// A staged record keeps the generation of the clone it belongs to and the
// credentials file's modification time and credential digest the failed
// clone read; publishing drops them.
func TestStagedRecordKeepsGenerationAndCredentialsModTime(t *testing.T) {
	f := newFixture(t)
	name := ProjectName("mirrors/gen")
	cfg := MirrorConfig{Upstream: "https://git.example.com/gen.git", Host: "gitlab", Credential: "bot"}
	if _, err := f.root.Stage(t.Context(), name, cfg); err != nil {
		t.Fatal(err)
	}
	pi, err := f.root.Project(name)
	if err != nil {
		t.Fatal(err)
	}
	mod := time.Date(2026, 12, 3, 10, 0, 0, 123456789, time.UTC)
	rec := StagedRecord{State: StagedFailed, LastError: "refused", Failure: "rejected:refused", Attempts: 2,
		LastAttempt: mod.Add(time.Minute), CredentialsModTime: mod, CredentialDigest: "d1", Generation: "GEN1"}
	if err := f.root.SetRecord(pi.Dir, cfg, rec); err != nil {
		t.Fatal(err)
	}
	pi, err = f.root.Project(name)
	if err != nil || pi.StagedRecord != rec {
		t.Fatalf("record read back = %+v %v, want %+v", pi.StagedRecord, err, rec)
	}
	if err := f.root.Publish(name); err != nil {
		t.Fatal(err)
	}
	pi, err = f.root.Project(name)
	if err != nil || pi.Generation != "" || !pi.CredentialsModTime.IsZero() || pi.CredentialDigest != "" {
		t.Errorf("published record = %+v %v, want no generation, modification time or digest", pi.StagedRecord, err)
	}
}

// The staged repository's fetch lock is held by one clone at a time and
// is not the record's lock: a record write goes on while a clone holds it.
func TestLockStagedFetchIsOneAtATimeAndApartFromTheRecordLock(t *testing.T) {
	f := newFixture(t)
	name := ProjectName("mirrors/gen")
	unlock, err := f.root.LockStagedFetch(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	unlockRecord, err := f.root.LockMirror(t.Context(), name)
	if err != nil {
		t.Fatalf("the record's lock while a clone holds the fetch lock: %v", err)
	}
	unlockRecord()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.root.LockStagedFetch(ctx, name); !errors.As(err, new(*LockedError)) {
		t.Errorf("a second LockStagedFetch while held = %v, want *LockedError once its context ends", err)
	}
	unlock()
	again, err := f.root.LockStagedFetch(t.Context(), name)
	if err != nil {
		t.Fatalf("LockStagedFetch once released: %v", err)
	}
	again()
}
