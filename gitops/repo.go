package gitops

import (
	"errors"
	"fmt"
	"sync"
	"time"

	git "github.com/libgit2/git2go/v34"
)

// handlePoolSize bounds the idle libgit2 handles kept per repository. A handle
// caches the parsed packed-refs, so reusing one saves a parse per call.
const handlePoolSize = 4

// Repo is one bare repository. Its methods are safe for concurrent use: each
// call borrows a libgit2 handle that no other goroutine uses meanwhile, as
// libgit2 requires.
type Repo struct {
	root    *Root
	name    ProjectName
	dir     string
	handles chan *handle

	// The group commit of creates (create.go): callers queue, one drainer
	// at a time writes everything queued in one transaction.
	createMu  sync.Mutex
	createQ   []*createRequest
	draining  bool
	writer    *Updater    // the long-lived update-ref process, or nil
	idleTimer *time.Timer // closes an idle writer

	packState // when to pack loose refs (pack.go)
}

type handle struct {
	repo *git.Repository
	odb  *git.Odb // opened on first use, kept with the handle
}

// objects returns the handle's object database, opening it once.
func (h *handle) objects() (*git.Odb, error) {
	if h.odb == nil {
		odb, err := h.repo.Odb()
		if err != nil {
			return nil, err
		}
		h.odb = odb
	}
	return h.odb, nil
}

func (h *handle) free() {
	if h.odb != nil {
		h.odb.Free()
	}
	h.repo.Free()
}

// Name returns the project name.
func (r *Repo) Name() ProjectName { return r.name }

// Dir returns the path of the bare repository.
func (r *Repo) Dir() string { return r.dir }

func (r *Repo) borrow() (*handle, error) {
	select {
	case h := <-r.handles:
		return h, nil
	default:
	}
	repo, err := git.OpenRepositoryExtended(r.dir, git.RepositoryOpenNoSearch|git.RepositoryOpenBare, "")
	if err != nil {
		return nil, &StorageError{Op: "opening " + string(r.name), Err: err}
	}
	return &handle{repo: repo}, nil
}

func (r *Repo) giveBack(h *handle) {
	select {
	case r.handles <- h:
	default:
		h.free()
	}
}

// closeWriter ends the writer process, if any.
func (r *Repo) closeWriter() {
	r.createMu.Lock()
	defer r.createMu.Unlock()
	if r.idleTimer != nil {
		r.idleTimer.Stop()
		r.idleTimer = nil
	}
	if r.writer != nil && !r.draining {
		_ = r.writer.Close()
		r.writer = nil
	}
}

func (r *Repo) freeHandles() {
	for {
		select {
		case h := <-r.handles:
			h.free()
		default:
			return
		}
	}
}

// with runs fn on a borrowed handle's repository.
func (r *Repo) with(fn func(*git.Repository) error) error {
	return r.withHandle(func(h *handle) error { return fn(h.repo) })
}

// withHandle runs fn on a borrowed handle.
func (r *Repo) withHandle(fn func(*handle) error) error {
	h, err := r.borrow()
	if err != nil {
		return err
	}
	defer r.giveBack(h)
	return fn(h)
}

// IsCommit checks that id names a commit in this repository. It answers
// ObjectNotFoundError when the object is missing, NotCommitError when it is
// a tree, blob or tag, and ProjectNotFoundError when the repository was
// removed since it was opened.
func (r *Repo) IsCommit(id ObjectID) error {
	oid, err := git.NewOid(string(id))
	if err != nil {
		return &InvalidNameError{Kind: "sha", Value: string(id), Reason: "must be 40 hex digits"}
	}
	return r.withHandle(func(h *handle) error {
		odb, err := h.objects()
		if err != nil {
			return &StorageError{Op: "opening object database of " + string(r.name), Err: err}
		}
		_, typ, err := odb.ReadHeader(oid)
		if isCode(err, git.ErrorCodeNotFound) {
			// Another process (a push, a fetch) may have added a pack since
			// this handle listed them.
			if rerr := odb.Refresh(); rerr == nil {
				_, typ, err = odb.ReadHeader(oid)
			}
		}
		if isCode(err, git.ErrorCodeNotFound) {
			// A handle opened before the repository was removed (a
			// mirror's deletion renames it away) finds no object in
			// it: the project is what is missing, not the commit.
			if r.Gone() {
				return &ProjectNotFoundError{Project: r.name}
			}
			return &ObjectNotFoundError{ID: id}
		}
		if err != nil {
			return &StorageError{Op: fmt.Sprintf("reading object %s in %s", id, r.name), Err: err}
		}
		if typ != git.ObjectCommit {
			return &NotCommitError{ID: id, Type: typ.String()}
		}
		return nil
	})
}

// ResolveRef returns the object a direct ref points at, or RefNotFoundError.
// Symbolic refs are followed.
func (r *Repo) ResolveRef(name RefName) (ObjectID, error) {
	var id ObjectID
	err := r.with(func(repo *git.Repository) error {
		ref, err := repo.References.Lookup(string(name))
		if isCode(err, git.ErrorCodeNotFound) || isCode(err, git.ErrorCodeInvalidSpec) {
			return &RefNotFoundError{Ref: name}
		}
		if err != nil {
			return &StorageError{Op: fmt.Sprintf("reading %s in %s", name, r.name), Err: err}
		}
		defer ref.Free()
		resolved, err := ref.Resolve()
		if err != nil {
			return &RefNotFoundError{Ref: name}
		}
		defer resolved.Free()
		id = ObjectID(resolved.Target().String())
		return nil
	})
	return id, err
}

// RefState is one ref and the object it points at.
type RefState struct {
	Ref RefName
	ID  ObjectID
}

// PipelineRefs lists every refs/pipelines/<id> of the repository; refs in that
// namespace whose last part is not a plain decimal id are not listed.
func (r *Repo) PipelineRefs() ([]RefState, error) {
	var out []RefState
	err := r.with(func(repo *git.Repository) error {
		it, err := repo.NewReferenceIteratorGlob(PipelineRefPrefix + "*")
		if err != nil {
			return &StorageError{Op: "listing pipeline refs of " + string(r.name), Err: err}
		}
		defer it.Free()
		for {
			ref, err := it.Next()
			if isCode(err, git.ErrorCodeIterOver) {
				return nil
			}
			if err != nil {
				return &StorageError{Op: "listing pipeline refs of " + string(r.name), Err: err}
			}
			name := RefName(ref.Name())
			if _, ok := ParsePipelineRef(name); ok && ref.Type() == git.ReferenceOid {
				out = append(out, RefState{Ref: name, ID: ObjectID(ref.Target().String())})
			}
			ref.Free()
		}
	})
	return out, err
}

// isCode sees through wrapping, which git.IsErrorCode does not.
func isCode(err error, code git.ErrorCode) bool {
	var gerr *git.GitError
	return errors.As(err, &gerr) && gerr.Code == code
}
