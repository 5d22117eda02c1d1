package gitops

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/limits"
)

// Defaults for Root's zero-valued fields.
const (
	DefaultStaleLockAge = 5 * time.Minute
	DefaultLockTimeout  = time.Second
	// DefaultGitTimeout is the longest one git process may run: the
	// runner's own default.
	DefaultGitTimeout = gitexec.DefaultTimeout
)

// Root is the directory that holds every bare repository. The zero values of
// the optional fields mean the defaults above. A Root is safe for concurrent
// use; it keeps a small pool of libgit2 handles per repository.
type Root struct {
	// Dir is the repos root; every project lives below it.
	Dir string
	// StaleLockAge is how old a ref lock file must be before it is taken for
	// the leftover of a crashed writer and removed. Zero: DefaultStaleLockAge.
	StaleLockAge time.Duration
	// LockTimeout is how long a writer waits for a live lock before giving
	// up: git's core.filesRefLockTimeout and core.packedRefsTimeout, and a
	// create's own wait for a lock another writer holds. Zero:
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// GitTimeout is the longest one git process may run; past it git gets
	// SIGTERM, and SIGKILL a grace period later. Zero: DefaultGitTimeout.
	GitTimeout time.Duration
	// Logger receives removed stale locks. Nil: slog.Default().
	Logger *slog.Logger
	// GitBinary is the git executable. Empty: "git" from PATH.
	GitBinary string
	// Observer hears of every ref transaction, for metrics. Nil: nobody.
	// Set it before the Root is used.
	Observer TransactionObserver
	// UpstreamFetches bounds the git fetches from upstreams (clones too)
	// running at once in this process (--max-upstream-fetches); more wait
	// for a turn within their deadline. Nil: no bound.
	UpstreamFetches *limits.Slots
	// DiskFloor is the free space the repos root keeps (--min-free-disk):
	// below it an upstream fetch is refused, and one running is stopped
	// (*limits.LowDiskError). Nil: no floor.
	DiskFloor *limits.DiskFloor
	// DiskPoll is how often the free space is read while a fetch runs.
	// Zero: limits.DefaultWatchInterval.
	DiskPoll time.Duration

	// killGrace is how long git has to exit after SIGTERM. Zero:
	// gitexec.DefaultKillGrace; tests shorten it.
	killGrace time.Duration

	mu    sync.Mutex
	repos map[string]*Repo // by resolved path

	resolved sync.Map // ProjectName -> resolvedPath: RepoPath's recent answers
}

// TransactionObserver is told about each git transaction that writes refs,
// once it is committed or has failed (an aborted one wrote nothing and is
// not reported): its kind ("create" or "delete"), how many refs it held, how
// long it took from Start, and nil if git committed it. Creates arriving
// together share one transaction (the group commit), so the sizes show how
// well that works. It is called from the writing goroutine: keep it quick.
type TransactionObserver interface {
	Transaction(kind string, refs int, took time.Duration, err error)
}

// observe reports a transaction of updates that began at start. Its kind
// follows from the updates: gitops never mixes creates and deletes.
func (r *Root) observe(updates []Update, start time.Time, err error) {
	if r.Observer == nil || len(updates) == 0 {
		return
	}
	kind := "create"
	if updates[0].New == ZeroID {
		kind = "delete"
	}
	r.Observer.Transaction(kind, len(updates), time.Since(start), err)
}

// resolveTTL is how long RepoPath trusts a path it resolved before it checks
// again. Resolving costs a dozen system calls (every symlink on the way, the
// files every bare repository has): a fifth of a pin's CPU when done on
// every request. A repository removed or re-pointed is seen within this
// time; a new one at once, as failures are not remembered.
const resolveTTL = time.Second

// resolvedPath is a project path found by RepoPath, and when.
type resolvedPath struct {
	path string
	at   time.Time
}

func (r *Root) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Root) staleLockAge() time.Duration {
	if r.StaleLockAge > 0 {
		return r.StaleLockAge
	}
	return DefaultStaleLockAge
}

func (r *Root) lockTimeout() time.Duration {
	if r.LockTimeout > 0 {
		return r.LockTimeout
	}
	return DefaultLockTimeout
}

func (r *Root) git() string {
	if r.GitBinary != "" {
		return r.GitBinary
	}
	return "git"
}

// RepoPath returns the path of the project's bare repository, after checking
// that it exists and that it resolves (symlinks included) inside the root.
func (r *Root) RepoPath(name ProjectName) (string, error) {
	if _, err := ParseProjectName(string(name)); err != nil {
		return "", err
	}
	if v, ok := r.resolved.Load(name); ok {
		if rp := v.(resolvedPath); time.Since(rp.at) < resolveTTL {
			return rp.path, nil
		}
	}
	path, err := r.resolve(name)
	if err != nil {
		r.resolved.Delete(name)
		return "", err
	}
	r.resolved.Store(name, resolvedPath{path: path, at: time.Now()})
	return path, nil
}

// resolve finds the project's bare repository on disk, symlinks followed,
// and checks that it lies inside the root.
func (r *Root) resolve(name ProjectName) (string, error) {
	root, err := filepath.EvalSymlinks(r.Dir)
	if err != nil {
		return "", &StorageError{Op: "resolving the repos root", Err: err}
	}
	path, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(string(name))+".git"))
	if err != nil {
		if absent(err) {
			return "", &ProjectNotFoundError{Project: name}
		}
		return "", &StorageError{Op: "resolving " + string(name), Err: err}
	}
	if !within(root, path) {
		return "", &ProjectNotFoundError{Project: name}
	}
	bare, err := isBareRepo(path)
	if err != nil {
		return "", &StorageError{Op: "reading " + string(name), Err: err}
	}
	if !bare {
		return "", &ProjectNotFoundError{Project: name}
	}
	return path, nil
}

// absent reports whether a path error means there is nothing there (or
// nothing that leads anywhere): a missing file, a file where a directory
// should be, a symlink loop, a name too long to exist. Any other failure
// (I/O, permissions, too many open files) says nothing about the project and
// must not answer 404.
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) ||
		errors.Is(err, syscall.ENAMETOOLONG)
}

// within reports whether path is strictly below dir; both are clean and
// absolute or both relative as EvalSymlinks returned them.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// isBareRepo is a cheap check for the files every bare repository has, so a
// plain directory named x.git is not taken for a project. It fails only when
// the files could not be looked at.
func isBareRepo(path string) (bool, error) {
	for _, name := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(path, name)); err != nil {
			if absent(err) {
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}

// Open returns the project's repository. It fails with ProjectNotFoundError
// when there is no bare repository by that name inside the root.
func (r *Root) Open(name ProjectName) (*Repo, error) {
	path, err := r.RepoPath(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repos == nil {
		r.repos = make(map[string]*Repo)
	}
	repo, ok := r.repos[path]
	if !ok {
		repo = &Repo{root: r, name: name, dir: path, handles: make(chan *handle, handlePoolSize)}
		r.repos[path] = repo
	}
	return repo, nil
}

// Projects lists every bare repository below the root, in lexical order.
// Directories that are not valid project names are skipped; symlinks are not
// followed, so the walk stays inside the root.
func (r *Root) Projects(ctx context.Context) ([]ProjectName, error) {
	var names []ProjectName
	err := filepath.WalkDir(r.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == r.Dir {
				return err
			}
			return nil // an unreadable subdirectory hides only itself
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if !d.IsDir() || path == r.Dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(d.Name(), ".git") {
			return nil
		}
		if bare, _ := isBareRepo(path); !bare {
			return nil // unreadable: skipped like a plain directory
		}
		rel, relErr := filepath.Rel(r.Dir, path)
		if relErr != nil {
			return filepath.SkipDir
		}
		if name, err := ParseProjectName(strings.TrimSuffix(filepath.ToSlash(rel), ".git")); err == nil {
			names = append(names, name)
		}
		return filepath.SkipDir // no projects nested inside a repository
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

// Close frees every pooled libgit2 handle. It first keeps every repository
// from starting a pack and waits for the running ones, so no pack outlives
// the Root.
func (r *Root) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, repo := range r.repos {
		repo.stopPacking()
	}
	for _, repo := range r.repos {
		repo.freeHandles()
		repo.closeWriter()
	}
	r.repos = nil
}

// Check reports whether the root directory can be read.
func (r *Root) Check() error {
	f, err := os.Open(r.Dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
