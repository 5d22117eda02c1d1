package gitops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	git "github.com/libgit2/git2go/v34"
)

// DemoMergeRequestIID is the merge request whose merge ref the demo
// repository carries.
const DemoMergeRequestIID = 1

// demoTime fixes the demo's commit dates so its SHAs are the same everywhere.
var demoTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// CreateDemo creates a small bare repository for trying the service out: a
// main branch, a feature branch, refs/merge-requests/1/head at the feature
// branch and refs/merge-requests/1/merge pointing at their merge, as a git
// host would compute it. It does nothing and answers
// created=false when the project already exists.
func (r *Root) CreateDemo(name ProjectName) (created bool, err error) {
	if _, err := r.RepoPath(name); err == nil {
		return false, nil
	}
	path := filepath.Join(r.Dir, filepath.FromSlash(string(name))+".git")
	if _, err := os.Stat(path); err == nil {
		return false, fmt.Errorf("creating demo project %s: %s exists and is not a bare repository", name, path)
	}
	repo, err := git.InitRepository(path, true)
	if err != nil {
		return false, fmt.Errorf("creating demo project %s: %w", name, err)
	}
	defer repo.Free()
	d := demoBuilder{repo: repo}
	base := d.commit("refs/heads/main", "Initial commit", nil, map[string]string{
		"README.md": "# demo/app\n\nA tiny project for trying refkeeper.\n",
		"app.sh":    "#!/bin/sh\necho hello\n",
	})
	feature := d.commit("refs/heads/feature", "Add a greeting flag", []*git.Oid{base}, map[string]string{
		"README.md": "# demo/app\n\nA tiny project for trying refkeeper.\n",
		"app.sh":    "#!/bin/sh\necho \"hello ${1:-world}\"\n",
	})
	main := d.commit("refs/heads/main", "Document the project", []*git.Oid{base}, map[string]string{
		"README.md": "# demo/app\n\nA tiny project for trying refkeeper.\n",
		"app.sh":    "#!/bin/sh\necho hello\n",
		"NOTES.md":  "Merge requests are tested on their merge result.\n",
	})
	merge := d.merge(main, feature, "Merge branch 'feature' into 'main'")
	if d.err == nil {
		_, d.err = repo.References.Create(string(MergeRequestRef(DemoMergeRequestIID)), merge, true, "demo merge request")
	}
	if d.err == nil {
		_, d.err = repo.References.Create(string(MergeRequestHeadRef(DemoMergeRequestIID)), feature, true, "demo merge request")
	}
	if d.err == nil {
		_, d.err = repo.References.CreateSymbolic("HEAD", "refs/heads/main", true, "")
	}
	if d.err != nil {
		return false, fmt.Errorf("creating demo project %s: %w", name, d.err)
	}
	return true, nil
}

// demoBuilder keeps the first error, so the demo reads as a list of steps.
type demoBuilder struct {
	repo *git.Repository
	err  error
}

func (d *demoBuilder) signature() *git.Signature {
	return &git.Signature{Name: "Demo Author", Email: "demo@example.com", When: demoTime}
}

func (d *demoBuilder) commit(ref, msg string, parents []*git.Oid, files map[string]string) *git.Oid {
	if d.err != nil {
		return nil
	}
	tb, err := d.repo.TreeBuilder()
	if err != nil {
		d.err = err
		return nil
	}
	defer tb.Free()
	for name, content := range files {
		blob, err := d.repo.CreateBlobFromBuffer([]byte(content))
		if err == nil {
			err = tb.Insert(name, blob, git.FilemodeBlob)
		}
		if err != nil {
			d.err = err
			return nil
		}
	}
	tree, err := tb.Write()
	if err != nil {
		d.err = err
		return nil
	}
	id, err := d.repo.CreateCommitFromIds(ref, d.signature(), d.signature(), msg+"\n", tree, parents...)
	d.err = err
	return id
}

func (d *demoBuilder) merge(ours, theirs *git.Oid, msg string) *git.Oid {
	if d.err != nil {
		return nil
	}
	oursC, err := d.repo.LookupCommit(ours)
	if err != nil {
		d.err = err
		return nil
	}
	defer oursC.Free()
	theirsC, err := d.repo.LookupCommit(theirs)
	if err != nil {
		d.err = err
		return nil
	}
	defer theirsC.Free()
	idx, err := d.repo.MergeCommits(oursC, theirsC, nil)
	if err != nil {
		d.err = err
		return nil
	}
	defer idx.Free()
	if idx.HasConflicts() {
		d.err = errors.New("demo branches conflict")
		return nil
	}
	tree, err := idx.WriteTreeTo(d.repo)
	if err != nil {
		d.err = err
		return nil
	}
	id, err := d.repo.CreateCommitFromIds("", d.signature(), d.signature(), msg+"\n", tree, ours, theirs)
	d.err = err
	return id
}
