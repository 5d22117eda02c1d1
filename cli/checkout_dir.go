package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// checkoutMark is the git config key (in DIR/.git/config) that says a
// checkout made this repository: only such a work tree is checkout's to
// reuse, and only while it is clean.
const checkoutMark = "refkeeper.checkout"

// unsafeDirError is a DIR that checkout will not touch: not absent, not
// empty, and not a clean work tree of an earlier checkout. Exit status 1.
type unsafeDirError struct {
	dir     string
	problem string
}

func (e *unsafeDirError) Error() string {
	return fmt.Sprintf("%s %s: left untouched (--force overrides)", e.dir, e.problem)
}

// checkDir says whether checkout may work in co.dir without destroying
// anything: nil when it is absent, an empty directory, or a repository an
// earlier checkout made (checkoutMark) whose work tree has no change, staged,
// unstaged or untracked. It changes nothing.
//
// The repository is named explicitly (--git-dir=DIR/.git), so that git never
// goes looking in DIR's parents: a directory inside another repository is not
// that repository.
func (co *checkout) checkDir(ctx context.Context) error {
	fi, err := os.Lstat(co.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", co.dir, err)
	}
	if !fi.IsDir() {
		return &unsafeDirError{dir: co.dir, problem: "is not a directory"}
	}
	entries, err := os.ReadDir(co.dir)
	if err != nil {
		return fmt.Errorf("checking %s: %w", co.dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if gi, err := os.Lstat(filepath.Join(co.dir, ".git")); err != nil || !gi.IsDir() {
		return &unsafeDirError{dir: co.dir, problem: "is not empty and is no repository of an earlier refkeeper checkout"}
	}
	explicit := []string{"--git-dir=.git", "--work-tree=."}
	mark, err := co.runGit(ctx, append(explicit, "config", "--local", "--get", checkoutMark)...)
	if err != nil || strings.TrimSpace(mark) != "true" {
		return &unsafeDirError{dir: co.dir, problem: "is a git repository that refkeeper checkout did not make"}
	}
	status, err := co.runGit(ctx, append(explicit, "status", "--porcelain", "--untracked-files=all", "--ignore-submodules=none")...)
	if err != nil {
		var gf *gitFailure
		if errors.As(err, &gf) {
			return &unsafeDirError{dir: co.dir, problem: "has a state git status cannot read (" + firstLine(gf.output) + ")"}
		}
		return err
	}
	if changes := strings.Split(strings.TrimRight(status, "\n"), "\n"); status != "" {
		shown := changes[:min(len(changes), 5)]
		more := ""
		if len(changes) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(changes)-len(shown))
		}
		return &unsafeDirError{dir: co.dir, problem: fmt.Sprintf("has local changes (%s%s)", strings.Join(shown, ", "), more)}
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
