package gitops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	git "github.com/libgit2/git2go/v34"
	"github.com/refkeeper/refkeeper/gitexec"
)

// A mirror is a bare repository the service made itself from an upstream.
// Its own git config is its record (section refkeeper), so nothing about it
// lives only in Redis:
//
//	[refkeeper]
//		upstream = https://git.example.com/group/app.git
//		host = gitlab
//		credential = example   (a name in the credentials file, never a secret)
//		state = cloning | failed   (only while staged, see below)
//		lastError = ...            (why the last clone failed)
//		failure = ...              (its kind, in the words of whoever wrote it)
//		attempts = 2               (clones tried again since the record was last set)
//		lastAttempt = 2026-...Z    (when the last clone failed, RFC 3339)
//		credentialsModTime = ...Z  (the credentials file's modification time the failed clone read)
//		generation = ...           (which start of the clone the record belongs to)
//
// attempts, lastAttempt and credentialsModTime are what a failed mirror's
// retries are paced by (package mirrors): they live in the record, so every
// replica sharing the repos root paces them alike. generation is a random
// name (no secret) written by every start of a clone; the clone writes its
// outcome only while the record still holds its generation, so a clone that
// was superseded (a new upstream, a deletion and a new registration, a
// retry) changes nothing.
//
// A mirror is first made and cloned under <root>/.mirrors/<name>.git, the
// staging area: a dot-name, which Projects and RepoPath never show, so a
// half-made clone is never a project. Once its first fetch succeeded it is
// renamed into place, <root>/<name>.git, in one step. A failed clone stays
// staged (state failed) until a retry succeeds or it is deleted.
const (
	stagingDirName = ".mirrors"
	configSection  = "refkeeper"
	keyUpstream    = "refkeeper.upstream"
	keyHost        = "refkeeper.host"
	keyCredential  = "refkeeper.credential"
	keyState       = "refkeeper.state"
	keyLastError   = "refkeeper.lasterror"
	keyFailure     = "refkeeper.failure"
	keyAttempts    = "refkeeper.attempts"
	keyLastAttempt = "refkeeper.lastattempt"
	keyCredsMod    = "refkeeper.credentialsmodtime"
	keyCredDigest  = "refkeeper.credentialdigest"
	keyGeneration  = "refkeeper.generation"
)

// MirrorConfig is what a mirror records about its upstream.
type MirrorConfig struct {
	Upstream   string
	Host       string
	Credential string // a name, or empty
}

// StagedState is where a staged mirror is: its first clone runs or failed.
type StagedState string

// States of a staged mirror.
const (
	StagedCloning StagedState = "cloning"
	StagedFailed  StagedState = "failed"
)

// StagedRecord is what a staged mirror records about its first clone. The
// zero value is a mirror in place (no state, nothing failed).
type StagedRecord struct {
	State StagedState
	// LastError says why the last clone failed, Failure what kind of
	// failure it was (the writer's own words; gitops only keeps it).
	LastError string
	Failure   string
	// Attempts counts the clones tried again since the record was last
	// set anew; LastAttempt is when the last one failed (zero: none did).
	Attempts    int
	LastAttempt time.Time
	// CredentialsModTime is the credentials file's modification time as
	// the failed clone read it (zero: none): a file written since may hold
	// the fixed credential.
	CredentialsModTime time.Time
	// CredentialDigest is a keyed digest of the mirror's own credential
	// entry as the failed clone read it (the writer's own; never the
	// credential nor an unkeyed hash of it): a file written since whose
	// entry digests alike holds no fix for this mirror.
	CredentialDigest string
	// Generation names the start of the clone this record belongs to.
	Generation string
}

// ProjectInfo is what the repos root says about one project.
type ProjectInfo struct {
	Name ProjectName
	// Mirror is false for a local project (Config is then empty).
	Mirror bool
	Config MirrorConfig
	// Staged is true for a mirror whose first clone has not succeeded:
	// the StagedRecord says whether it runs or failed and why, Since when
	// the state was last written.
	Staged bool
	StagedRecord
	Since time.Time
	// FetchedAt is when the last fetch into it ended well (zero: never).
	FetchedAt time.Time
	// Dir is the repository's directory (staged or in place).
	Dir string
}

// StagingArea is the directory of the staged mirrors' records: what the
// service keeps for them beside those records lives there too.
func (r *Root) StagingArea() string { return filepath.Join(r.Dir, stagingDirName) }

// stagingPath is where the mirror name is made and cloned.
func (r *Root) stagingPath(name ProjectName) string {
	return filepath.Join(r.Dir, stagingDirName, filepath.FromSlash(string(name))+".git")
}

func (r *Root) livePath(name ProjectName) string {
	return filepath.Join(r.Dir, filepath.FromSlash(string(name))+".git")
}

// readRecord reads the refkeeper section of a repository's config. ok is
// false when it has none (a local project).
func readRecord(dir string) (cfg MirrorConfig, rec StagedRecord, ok bool, err error) {
	c, err := git.OpenOndisk(filepath.Join(dir, "config"))
	if err != nil {
		return MirrorConfig{}, StagedRecord{}, false, &StorageError{Op: "reading the config of " + dir, Err: err}
	}
	defer c.Free()
	it, err := c.NewIteratorGlob(`^refkeeper\.`)
	if err != nil {
		return MirrorConfig{}, StagedRecord{}, false, &StorageError{Op: "reading the config of " + dir, Err: err}
	}
	defer it.Free()
	for {
		e, err := it.Next()
		if err != nil {
			var gerr *git.GitError
			if errors.As(err, &gerr) && gerr.Code == git.ErrorCodeIterOver {
				break
			}
			return MirrorConfig{}, StagedRecord{}, false, &StorageError{Op: "reading the config of " + dir, Err: err}
		}
		switch strings.ToLower(e.Name) {
		case keyUpstream:
			cfg.Upstream, ok = e.Value, true
		case keyHost:
			cfg.Host = e.Value
		case keyCredential:
			cfg.Credential = e.Value
		case keyState:
			rec.State = StagedState(e.Value)
		case keyLastError:
			rec.LastError = e.Value
		case keyFailure:
			rec.Failure = e.Value
		case keyAttempts:
			// Written by writeRecord only; anything else reads as none.
			if n, err := strconv.Atoi(e.Value); err == nil && n > 0 {
				rec.Attempts = n
			}
		case keyLastAttempt:
			if t, err := time.Parse(time.RFC3339Nano, e.Value); err == nil {
				rec.LastAttempt = t
			}
		case keyCredsMod:
			if t, err := time.Parse(time.RFC3339Nano, e.Value); err == nil {
				rec.CredentialsModTime = t
			}
		case keyCredDigest:
			rec.CredentialDigest = e.Value
		case keyGeneration:
			rec.Generation = e.Value
		}
	}
	return cfg, rec, ok, nil
}

// writeRecord sets the mirror's record in its config; an empty (or zero)
// credential or field of rec removes its key. The keys are written into a copy of the
// config that then replaces it in one rename, so a reader sees the old
// record or the new one, never a state without its error.
func writeRecord(dir string, cfg MirrorConfig, rec StagedRecord) error {
	path := filepath.Join(dir, "config")
	old, err := os.ReadFile(path)
	if err != nil {
		return &StorageError{Op: "reading the config of " + dir, Err: err}
	}
	tmp, err := os.CreateTemp(dir, "config.refkeeper-*")
	if err != nil {
		return &StorageError{Op: "writing the config of " + dir, Err: err}
	}
	defer os.Remove(tmp.Name()) // gone after the rename; the leftover otherwise
	_, werr := tmp.Write(old)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return &StorageError{Op: "writing the config of " + dir, Err: werr}
	}
	if err := setRecordKeys(tmp.Name(), cfg, rec); err != nil {
		return &StorageError{Op: "writing the config of " + dir, Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return &StorageError{Op: "writing the config of " + dir, Err: err}
	}
	return nil
}

// setRecordKeys writes the record's keys into the config file at path.
func setRecordKeys(path string, cfg MirrorConfig, rec StagedRecord) error {
	c, err := git.OpenOndisk(path)
	if err != nil {
		return err
	}
	defer c.Free()
	attempts := ""
	if rec.Attempts > 0 {
		attempts = strconv.Itoa(rec.Attempts)
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, kv := range [][2]string{{keyUpstream, cfg.Upstream}, {keyHost, cfg.Host}, {keyCredential, cfg.Credential},
		{keyState, string(rec.State)}, {keyLastError, rec.LastError}, {keyFailure, rec.Failure},
		{keyAttempts, attempts}, {keyLastAttempt, stamp(rec.LastAttempt)},
		{keyCredsMod, stamp(rec.CredentialsModTime)}, {keyCredDigest, rec.CredentialDigest}, {keyGeneration, rec.Generation}} {
		if kv[1] != "" {
			if err := c.SetString(kv[0], kv[1]); err != nil {
				return err
			}
			continue
		}
		err := c.Delete(kv[0])
		var gerr *git.GitError
		if err != nil && !(errors.As(err, &gerr) && gerr.Code == git.ErrorCodeNotFound) {
			return err
		}
	}
	return nil
}

// info reads what is at dir into a ProjectInfo.
func info(name ProjectName, dir string, staged bool) (ProjectInfo, error) {
	cfg, rec, mirror, err := readRecord(dir)
	if err != nil {
		return ProjectInfo{}, err
	}
	pi := ProjectInfo{Name: name, Mirror: mirror, Config: cfg, Dir: dir, Staged: staged}
	if staged {
		pi.StagedRecord = rec
		if pi.State == "" {
			pi.State = StagedCloning
		}
		if st, err := os.Stat(filepath.Join(dir, "config")); err == nil {
			pi.Since = st.ModTime()
		}
	}
	if st, err := os.Stat(filepath.Join(dir, fetchedMarker)); err == nil {
		pi.FetchedAt = st.ModTime()
	}
	return pi, nil
}

// Project says what the name is: a local project, a mirror in place, or a
// staged mirror. It fails with *ProjectNotFoundError when there is none.
//
// A staged mirror's record is rewritten and the mirror renamed into place
// when its clone succeeds (Publish): a read that meets either half-way is
// read again, a few times, before it is an error.
func (r *Root) Project(name ProjectName) (ProjectInfo, error) {
	var err error
	for range projectReadAttempts {
		var pi ProjectInfo
		var settled bool
		if pi, settled, err = r.project(name); settled {
			return pi, err
		}
	}
	return ProjectInfo{}, err
}

// projectReadAttempts bounds how often Project reads a mirror that is
// being published; each read is short, and a publish is two file renames.
const projectReadAttempts = 5

// project is one read of Project: settled is false when it met a staged
// mirror being published, and err then says what went wrong.
func (r *Root) project(name ProjectName) (pi ProjectInfo, settled bool, err error) {
	path, err := r.RepoPath(name)
	if bare, _ := isBareRepo(path); err == nil && !bare {
		// Removed since RepoPath remembered it (by another replica: a
		// removal here forgets it at once): a record read from what is
		// left there would be no mirror's.
		r.resolved.Delete(name)
		path, err = r.RepoPath(name)
	}
	if err == nil {
		pi, err = info(name, path, false)
		return pi, true, err
	}
	var nf *ProjectNotFoundError
	if !errors.As(err, &nf) {
		return ProjectInfo{}, true, err
	}
	staged := r.stagingPath(name)
	bare, serr := isBareRepo(staged)
	if serr == nil && bare {
		pi, serr = info(name, staged, true)
		// What was read is the staged mirror's only if it is still there
		// after the read: a rename in between leaves a half-read record.
		if still, _ := isBareRepo(staged); serr == nil && still {
			return pi, true, nil
		}
	}
	// A staged mirror is renamed into place when its clone succeeds: one
	// that was published after RepoPath looked is in place now, not lost.
	if path, perr := r.RepoPath(name); perr == nil {
		pi, err = info(name, path, false)
		return pi, true, err
	}
	if serr != nil {
		return ProjectInfo{}, false, &StorageError{Op: "reading " + string(name), Err: serr}
	}
	return ProjectInfo{}, true, err
}

// StagedProjects lists the staged mirrors' names, in lexical order.
func (r *Root) StagedProjects(ctx context.Context) ([]ProjectName, error) {
	staging := &Root{Dir: filepath.Join(r.Dir, stagingDirName)}
	return staging.Projects(ctx)
}

// Stage makes an empty bare repository for mirror name in the staging area,
// recording cfg with state cloning (the caller, holding the mirror's lock,
// then writes the clone's generation with SetRecord). It is made under a temporary name and
// renamed, so a concurrent Stage of the same name finds either nothing or a
// whole repository: created is false when one was there already (then
// nothing changed). A local project or mirror in place is
// *ProjectExistsError.
func (r *Root) Stage(ctx context.Context, name ProjectName, cfg MirrorConfig) (created bool, err error) {
	if _, err := ParseProjectName(string(name)); err != nil {
		return false, err
	}
	if pi, err := r.Project(name); err == nil && !pi.Staged {
		return false, &ProjectExistsError{Project: name, Local: !pi.Mirror}
	}
	area := filepath.Join(r.Dir, stagingDirName)
	if err := os.MkdirAll(area, 0o755); err != nil {
		return false, &StorageError{Op: "making the staging area", Err: err}
	}
	tmp, err := os.MkdirTemp(area, ".new-")
	if err != nil {
		return false, &StorageError{Op: "making a staging directory", Err: err}
	}
	defer os.RemoveAll(tmp) // gone after the rename; the leftover otherwise
	repoDir := filepath.Join(tmp, "repo.git")
	// `git --git-dir X init --bare` makes the repository at X.
	cmd := r.command(ctx, repoDir, "init", "--quiet", "--bare", "--initial-branch=main")
	var out gitexec.Stderr
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return false, &CommandError{Args: []string{"init", "--bare"}, Stderr: out.String(), Err: err}
	}
	if err := writeRecord(repoDir, cfg, StagedRecord{State: StagedCloning}); err != nil {
		return false, err
	}
	dest := r.stagingPath(name)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return false, &StorageError{Op: "making the staging area", Err: err}
	}
	if err := os.Rename(repoDir, dest); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return false, nil
		}
		return false, &StorageError{Op: "staging " + string(name), Err: err}
	}
	return true, nil
}

// SetRecord rewrites the record of the mirror at dir (a ProjectInfo's Dir):
// cfg, and rec for a staged mirror (the zero StagedRecord for one in place).
func (r *Root) SetRecord(dir string, cfg MirrorConfig, rec StagedRecord) error {
	return writeRecord(dir, cfg, rec)
}

// CloneRefspecs are what a mirror's first fetch takes: every branch, and
// the merge request refs of its host kind (refspecs as MirrorRefspecs
// answers them). Tags are left out, as in every fetch of a mirror.
func CloneRefspecs(mrRefs ...string) []string {
	return append([]string{"+refs/heads/*:refs/heads/*"}, mrRefs...)
}

// FetchStaged runs the first fetch of a staged mirror, bounded by ctx (see
// fetch). What an earlier clone whose process died left of its pack is
// removed first: no housekeeping visits a staged mirror.
func (r *Root) FetchStaged(ctx context.Context, name ProjectName, up Upstream, refspecs []string) error {
	dir := r.stagingPath(name)
	r.removeStaleTmpPacks(dir)
	return r.fetch(ctx, dir, up, refspecs, turnWatch{})
}

// Publish renames a staged mirror into place: from now on it is a project.
// A name taken meanwhile (a local project made by hand) is
// *ProjectExistsError, and the staged mirror stays.
func (r *Root) Publish(name ProjectName) error {
	from, to := r.stagingPath(name), r.livePath(name)
	// rename(2) replaces an empty directory: refuse to take even that, but
	// for what a deleted mirror's last ref writes may have left behind (see
	// clearDebris).
	r.clearDebris(to)
	if _, err := os.Lstat(to); err == nil {
		return &ProjectExistsError{Project: name, Local: true}
	}
	if err := writeRecord(from, r.mustRecord(from), StagedRecord{}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return &StorageError{Op: "publishing " + string(name), Err: err}
	}
	if err := os.Rename(from, to); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return &ProjectExistsError{Project: name, Local: true}
		}
		return &StorageError{Op: "publishing " + string(name), Err: err}
	}
	r.resolved.Delete(name)
	return nil
}

// mustRecord is the mirror config at dir, or empty when unreadable (then
// the write that follows fails and says why).
func (r *Root) mustRecord(dir string) MirrorConfig {
	cfg, _, _, _ := readRecord(dir)
	return cfg
}

// RemoveMirror deletes a mirror, in place or staged, with all its refs and
// objects: it is first renamed out of sight (one step: no reader sees it
// half gone), then removed. A local project is *NotMirrorError and stays;
// no such mirror is *ProjectNotFoundError; files that could not be removed
// after the rename are *LeftoverError (the mirror is gone all the same).
func (r *Root) RemoveMirror(name ProjectName) error {
	pi, err := r.Project(name)
	if err != nil {
		return err
	}
	if !pi.Mirror {
		return &NotMirrorError{Project: name}
	}
	area := filepath.Join(r.Dir, stagingDirName)
	if err := os.MkdirAll(area, 0o755); err != nil {
		return &StorageError{Op: "removing " + string(name), Err: err}
	}
	trash, err := os.MkdirTemp(area, ".removed-")
	if err != nil {
		return &StorageError{Op: "removing " + string(name), Err: err}
	}
	defer os.RemoveAll(trash)
	if err := os.Rename(pi.Dir, filepath.Join(trash, "repo.git")); err != nil {
		if absent(err) {
			return &ProjectNotFoundError{Project: name}
		}
		return &StorageError{Op: "removing " + string(name), Err: err}
	}
	r.forget(name, pi.Dir)
	r.clearDebris(pi.Dir)
	if err := os.RemoveAll(trash); err != nil {
		return &LeftoverError{Path: trash, Err: err}
	}
	return nil
}

// clearDebris removes what ref writes into a mirror that was just removed
// leave at its old path: a `git update-ref` that was running when the
// repository was renamed away (here or on another replica) makes the
// leading directories of its lock files again under the old path, and may
// even write its refs there. What it leaves is a directory holding nothing
// but a refs/ tree: no HEAD, no objects, no config, so no repository and
// nothing anyone made by hand; left alone, the name could never be a
// mirror again. Anything else at dir is left as it is.
func (r *Root) clearDebris(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return
	}
	for _, e := range entries {
		if e.Name() != "refs" || !e.IsDir() {
			return
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		r.logger().Warn("removing the refs a deleted mirror's last writes left", "dir", dir, "err", err)
		return
	}
	r.logger().Info("removed the refs a deleted mirror's last writes left", "dir", dir)
}

// LeftoverError is a mirror removed from sight (no reader finds it any
// more) whose files could not all be removed: the mirror is gone, its
// directory in the staging area is not.
type LeftoverError struct {
	Path string
	Err  error
}

func (e *LeftoverError) Error() string {
	return fmt.Sprintf("the mirror is gone, its files in %s not: %v", e.Path, e.Err)
}

func (e *LeftoverError) Unwrap() error { return e.Err }

// forget drops what the Root keeps open for a repository that is gone:
// pooled libgit2 handles, the writer process, the resolved path.
func (r *Root) forget(name ProjectName, dir string) {
	r.resolved.Delete(name)
	r.mu.Lock()
	repo, ok := r.repos[dir]
	if ok {
		delete(r.repos, dir)
	}
	r.mu.Unlock()
	if ok {
		repo.stopPacking()
		repo.freeHandles()
		repo.closeWriter()
	}
}

// FetchMirror fetches refspecs from the mirror's upstream into the mirror
// in place, shared with concurrent callers (see Fetcher). A mirror removed
// meanwhile is *ProjectNotFoundError.
func (f *Fetcher) FetchMirror(ctx context.Context, name ProjectName, up Upstream, refspecs []string) error {
	path, err := f.Root.RepoPath(name)
	if err != nil {
		return err
	}
	err = f.fetchShared(ctx, name, path, up, refspecs)
	if bare, serr := isBareRepo(path); err != nil && serr == nil && !bare {
		// Removed while it fetched (or since RepoPath remembered it):
		// git's "not a git repository" is about the mirror, not the
		// upstream.
		return &ProjectNotFoundError{Project: name}
	}
	return err
}

// IsStaged reports whether name is a mirror whose first clone has not
// succeeded yet (running or failed).
func (r *Root) IsStaged(name ProjectName) bool {
	if _, err := ParseProjectName(string(name)); err != nil {
		return false
	}
	bare, _ := isBareRepo(r.stagingPath(name))
	return bare
}
