package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	git "github.com/libgit2/git2go/v34"

	"github.com/refkeeper/refkeeper/gitexec"
)

// Identity is the author and committer of computed merges: "Name <email>".
type Identity struct {
	Name  string
	Email string
}

// DefaultIdentity is the identity of computed merges unless configured.
var DefaultIdentity = Identity{Name: "refkeeper", Email: "refkeeper@localhost"}

// ParseIdentity reads "Name <email>". git drops some characters from names
// and addresses (angle brackets, newlines, and "crud" such as dots, commas
// and spaces at either end), so an identity git would change is refused:
// the commit written here must be the one `git commit-tree` makes from the
// same values.
func ParseIdentity(s string) (Identity, error) {
	bad := func(reason string) error {
		return &InvalidNameError{Kind: "identity", Value: s, Reason: reason}
	}
	name, rest, ok := strings.Cut(s, " <")
	if !ok || !strings.HasSuffix(rest, ">") {
		return Identity{}, bad(`must be "Name <email>"`)
	}
	id := Identity{Name: name, Email: strings.TrimSuffix(rest, ">")}
	for _, part := range []string{id.Name, id.Email} {
		if part == "" {
			return Identity{}, bad("name and email must not be empty")
		}
		if strings.ContainsAny(part, "<>") || strings.IndexFunc(part, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return Identity{}, bad("name and email must not contain <, > or control characters")
		}
		if isCrud(part[0]) || isCrud(part[len(part)-1]) {
			return Identity{}, bad(`name and email must not begin or end with a space or any of . , : ; " \ '`)
		}
	}
	return id, nil
}

// isCrud is git's set of characters trimmed from the ends of an identity.
func isCrud(c byte) bool {
	return c <= ' ' || strings.IndexByte(`.,:;<>"\'`, c) >= 0
}

// String formats the identity as ParseIdentity reads it.
func (i Identity) String() string { return i.Name + " <" + i.Email + ">" }

// MarshalText makes Identity a flag value.
func (i Identity) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText makes Identity a flag value.
func (i *Identity) UnmarshalText(b []byte) error {
	id, err := ParseIdentity(string(b))
	if err != nil {
		return err
	}
	*i = id
	return nil
}

// MergeMode says what commit a computed merge is.
type MergeMode string

const (
	// MergeModeMerge is a merge commit with parents target and source.
	MergeModeMerge MergeMode = "merge"
	// MergeModeSquash is a commit of the merged tree with the target as its
	// only parent.
	MergeModeSquash MergeMode = "squash"
)

// ParseMergeMode accepts "merge" and "squash"; empty means merge.
func ParseMergeMode(s string) (MergeMode, error) {
	switch m := MergeMode(s); m {
	case "":
		return MergeModeMerge, nil
	case MergeModeMerge, MergeModeSquash:
		return m, nil
	}
	return "", &InvalidNameError{Kind: "merge mode", Value: s, Reason: "must be merge or squash"}
}

// Revision names a commit to merge: by its id, or by a ref read when the
// merge is computed.
type Revision struct {
	ID  ObjectID // set for a SHA
	Ref RefName  // set for a ref
}

// ParseRevision reads a merge input: 40 hex digits are a SHA, "refs/..." is
// a full ref name, anything else is a branch name (main is refs/heads/main).
// A ref name git would not accept is refused.
func ParseRevision(s string) (Revision, error) {
	if id, err := ParseObjectID(s); err == nil {
		return Revision{ID: id}, nil
	}
	ref := s
	if !strings.HasPrefix(s, "refs/") {
		ref = "refs/heads/" + s
	}
	if valid, err := git.ReferenceNameIsValid(ref); err != nil || !valid || s == "" {
		return Revision{}, &InvalidNameError{Kind: "ref", Value: s, Reason: "must be a 40-hex SHA, a full ref name or a branch name"}
	}
	return Revision{Ref: RefName(ref)}, nil
}

// MergeRequestHeadRef formats the head ref of a merge request as GitLab
// keeps it (also in a local project): the merge request's source commit.
func MergeRequestHeadRef(iid int64) RefName {
	return RefName("refs/merge-requests/" + strconv.FormatInt(iid, 10) + "/head")
}

// ResolveCommit returns the commit a ref points at, peeling annotated tags.
// It answers RefNotFoundError for a missing ref, ObjectNotFoundError when
// the ref points at a missing object, and NotCommitError when it leads to a
// tree or blob.
func (r *Repo) ResolveCommit(name RefName) (ObjectID, error) {
	target, err := r.ResolveRef(name)
	if err != nil {
		return "", err
	}
	if err := r.IsCommit(target); err == nil {
		return target, nil
	} else if nc := (*NotCommitError)(nil); !errors.As(err, &nc) || nc.Type != git.ObjectTag.String() {
		return "", err
	}
	var id ObjectID
	err = r.with(func(repo *git.Repository) error {
		oid, _ := git.NewOid(string(target))
		obj, err := repo.Lookup(oid)
		if err != nil {
			return &StorageError{Op: fmt.Sprintf("reading %s in %s", target, r.name), Err: err}
		}
		defer obj.Free()
		peeled, err := obj.Peel(git.ObjectCommit)
		if err != nil {
			return &NotCommitError{ID: target, Type: "tag of no commit"}
		}
		defer peeled.Free()
		id = ObjectID(peeled.Id().String())
		return nil
	})
	return id, err
}

// MergeSpec is everything a computed merge depends on: the commit is a
// function of these values alone.
type MergeSpec struct {
	Source, Target ObjectID
	Mode           MergeMode
	// Identity is author and committer; zero: DefaultIdentity.
	Identity Identity
}

// mergeTreeArgs are the arguments of the merge: git's merge-tree is the
// reference anyone recomputing a merge uses, so its tree is the one written.
func mergeTreeArgs(spec MergeSpec) []string {
	return []string{"merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", string(spec.Target), string(spec.Source)}
}

// Merge computes the merge of spec.Source into spec.Target and writes its
// commit to the object store (no ref). The tree is git merge-tree's; the
// commit has parents [target, source] (merge; [target] alone when source is
// target, as git commit-tree writes it) or [target] (squash), the
// identity as author and committer, both dated one second after the later
// committer date of the two commits, in UTC, and the message
// "Merge <source> into <target>\n". The same spec gives the same commit in
// any repository that has the two commits.
//
// It answers ObjectNotFoundError or NotCommitError for a missing input,
// MergeConflictError when the merge has conflicts, and
// UnrelatedHistoriesError when the two have no common ancestor. On those
// failures nothing is written: git writes the merge's objects into a
// temporary object directory, which is moved into the repository only
// when the merge is clean.
func (r *Repo) Merge(ctx context.Context, spec MergeSpec) (ObjectID, error) {
	if spec.Mode != MergeModeMerge && spec.Mode != MergeModeSquash {
		return "", &InvalidNameError{Kind: "merge mode", Value: string(spec.Mode), Reason: "must be merge or squash"}
	}
	if spec.Identity == (Identity{}) {
		spec.Identity = DefaultIdentity
	}
	when, err := r.mergeTime(spec.Source, spec.Target)
	if err != nil {
		return "", err
	}
	tree, quarantine, err := r.mergeTree(ctx, spec)
	if quarantine != "" {
		defer os.RemoveAll(quarantine)
	}
	if err != nil {
		return "", err
	}
	if err := r.migrateObjects(quarantine); err != nil {
		return "", err
	}
	return r.writeObject(mergeCommitText(spec, tree, when), git.ObjectCommit)
}

// mergeTime is one second after the later committer date of the two
// commits, in Unix seconds.
func (r *Repo) mergeTime(source, target ObjectID) (int64, error) {
	var latest int64
	for _, id := range []ObjectID{source, target} {
		if err := r.IsCommit(id); err != nil {
			return 0, err
		}
		err := r.with(func(repo *git.Repository) error {
			oid, _ := git.NewOid(string(id))
			c, err := repo.LookupCommit(oid)
			if err != nil {
				return &StorageError{Op: fmt.Sprintf("reading commit %s in %s", id, r.name), Err: err}
			}
			defer c.Free()
			latest = max(latest, c.Committer().When.Unix())
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return latest + 1, nil
}

// mergeTree runs git merge-tree with a temporary object directory of its
// own (the repository's objects are its alternate) and answers the merged
// tree and that directory, which the caller removes.
func (r *Repo) mergeTree(ctx context.Context, spec MergeSpec) (ObjectID, string, error) {
	objects, err := filepath.Abs(filepath.Join(r.dir, "objects"))
	if err != nil {
		return "", "", &StorageError{Op: "locating objects of " + string(r.name), Err: err}
	}
	// git's own prune removes a tmp_objdir* directory a crashed merge left.
	quarantine, err := os.MkdirTemp(objects, "tmp_objdir-refkeeper-merge-")
	if err != nil {
		return "", "", &StorageError{Op: "creating a temporary object directory in " + string(r.name), Err: err}
	}
	args := mergeTreeArgs(spec)
	cmd := r.root.command(ctx, r.dir, args...)
	cmd.Env = append(cmd.Env, "GIT_OBJECT_DIRECTORY="+quarantine, "GIT_ALTERNATE_OBJECT_DIRECTORIES="+objects)
	var stdout bytes.Buffer
	var stderr gitexec.Stderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	switch {
	case runErr == nil:
	case gitexec.ExitCode(runErr) == 1:
		paths, total := conflictPaths(stdout.Bytes())
		return "", quarantine, &MergeConflictError{Source: spec.Source, Target: spec.Target, Paths: paths, Total: total}
	case strings.Contains(stderr.String(), "refusing to merge unrelated histories"):
		return "", quarantine, &UnrelatedHistoriesError{Source: spec.Source, Target: spec.Target}
	default:
		if ctx.Err() != nil {
			runErr = fmt.Errorf("%w: %w", runErr, ctx.Err())
		}
		return "", quarantine, r.explain(&CommandError{Args: args, Stderr: stderr.String(), Err: runErr})
	}
	tree, _, _ := bytes.Cut(stdout.Bytes(), []byte{0})
	id, err := ParseObjectID(strings.TrimSpace(string(tree)))
	if err != nil {
		return "", quarantine, &CommandError{Args: args, Stderr: stderr.String(), Err: fmt.Errorf("unexpected output %q", stdout.String())}
	}
	return id, quarantine, nil
}

// conflictPaths reads merge-tree's -z --name-only output: the tree, then
// each conflicted path (a path may be listed once per conflict). It
// answers the first MaxConflictPaths of them and how many there are.
func conflictPaths(out []byte) (paths []string, total int) {
	fields := bytes.Split(out, []byte{0})
	seen := make(map[string]bool)
	for _, f := range fields[1:] {
		if p := string(f); p != "" && !seen[p] {
			seen[p] = true
			total++
			if len(paths) < MaxConflictPaths {
				paths = append(paths, p)
			}
		}
	}
	return paths, total
}

// migrateObjects moves the loose objects a clean merge wrote into the
// repository, as git does with a push's quarantine: link, and an object
// already there is kept (same name, same content).
func (r *Repo) migrateObjects(quarantine string) error {
	objects := filepath.Dir(quarantine)
	return filepath.WalkDir(quarantine, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return &StorageError{Op: "reading merge objects of " + string(r.name), Err: err}
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(quarantine, path)
		if err != nil {
			return &StorageError{Op: "moving merge objects of " + string(r.name), Err: err}
		}
		dir, file := filepath.Split(rel)
		if len(filepath.Clean(dir)) != 2 || len(file) != 38 {
			return &StorageError{Op: "moving merge objects of " + string(r.name), Err: fmt.Errorf("unexpected file %s in the merge's object directory", rel)}
		}
		dst := filepath.Join(objects, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return r.explain(&StorageError{Op: "moving merge objects of " + string(r.name), Err: err})
		}
		// A file system without hard links gets a rename, as git does it;
		// one over an existing object replaces it with the same bytes.
		if err := os.Link(path, dst); err != nil && !errors.Is(err, fs.ErrExist) {
			if err := os.Rename(path, dst); err != nil {
				return r.explain(&StorageError{Op: "moving merge objects of " + string(r.name), Err: err})
			}
		}
		return nil
	})
}

// mergeCommitText is the commit object as `git commit-tree` writes it from
// the same values.
func mergeCommitText(spec MergeSpec, tree ObjectID, when int64) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "tree %s\nparent %s\n", tree, spec.Target)
	// git commit-tree drops a repeated parent: merging a commit into itself
	// has one.
	if spec.Mode == MergeModeMerge && spec.Source != spec.Target {
		fmt.Fprintf(&b, "parent %s\n", spec.Source)
	}
	sig := fmt.Sprintf("%s %d +0000", spec.Identity, when)
	fmt.Fprintf(&b, "author %s\ncommitter %s\n\nMerge %s into %s\n", sig, sig, spec.Source, spec.Target)
	return b.Bytes()
}

// writeObject writes one object to the repository's object store.
func (r *Repo) writeObject(data []byte, typ git.ObjectType) (ObjectID, error) {
	var id ObjectID
	err := r.withHandle(func(h *handle) error {
		odb, err := h.objects()
		if err != nil {
			return &StorageError{Op: "opening object database of " + string(r.name), Err: err}
		}
		oid, err := odb.Write(data, typ)
		if err != nil {
			return r.explain(&StorageError{Op: "writing an object to " + string(r.name), Err: err})
		}
		id = ObjectID(oid.String())
		return nil
	})
	return id, err
}
