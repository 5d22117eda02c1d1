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
	"time"
)

// Defaults for Root's zero-valued fields.
const (
	DefaultStaleLockAge = 5 * time.Minute
	DefaultLockTimeout  = time.Second
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
	// LockTimeout is how long git waits for a live lock before giving up
	// (core.filesRefLockTimeout and core.packedRefsTimeout). Zero:
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// Logger receives removed stale locks. Nil: slog.Default().
	Logger *slog.Logger
	// GitBinary is the git executable. Empty: "git" from PATH.
	GitBinary string

	mu    sync.Mutex
	repos map[string]*Repo // by resolved path
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
	root, err := filepath.EvalSymlinks(r.Dir)
	if err != nil {
		return "", &ProjectNotFoundError{Project: name}
	}
	path, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(string(name))+".git"))
	if err != nil || !within(root, path) {
		return "", &ProjectNotFoundError{Project: name}
	}
	if !isBareRepo(path) {
		return "", &ProjectNotFoundError{Project: name}
	}
	return path, nil
}

// within reports whether path is strictly below dir; both are clean and
// absolute or both relative as EvalSymlinks returned them.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// isBareRepo is a cheap check for the files every bare repository has, so a
// plain directory named x.git is not taken for a project.
func isBareRepo(path string) bool {
	for _, name := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(path, name)); err != nil {
			return false
		}
	}
	return true
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
		if !strings.HasSuffix(d.Name(), ".git") || !isBareRepo(path) {
			return nil
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

// Close frees every pooled libgit2 handle.
func (r *Root) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, repo := range r.repos {
		repo.packs.Wait()
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
