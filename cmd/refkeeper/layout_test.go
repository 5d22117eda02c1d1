package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/refkeeper/refkeeper"

// allowedInternal says which of the project's packages each package may
// import: cmd -> api, jobs -> mirrors -> refs -> gitops and api -> hooks ->
// refs, one way only. refs reaches the mirrors through the interface it
// declares (refs.PinFetcher), so it never imports mirrors or hooks.
var allowedInternal = map[string][]string{
	"gitops":        {},
	"refs":          {"gitops"},
	"mirrors":       {"refs", "gitops"},
	"api":           {"hooks", "mirrors", "refs"},
	"hooks":         {"refs"},
	"jobs":          {"mirrors", "refs"},
	"cmd/refkeeper": {"api", "hooks", "jobs", "mirrors", "refs", "gitops", "client"},
	"testdata":      {},
	// systest runs the built binary and talks to it from outside only:
	// its tests may import the test helpers and nothing else of ours.
	"systest": {"testdata"},
	// refstest is the one fixture that builds a pin service for tests.
	"refs/refstest": {"refs", "gitops", "testdata"},
	// client is what users' programs import: nothing of ours.
	"client": {},
}

// confined names third-party libraries and the only packages that may import
// them, so each can be replaced in one place.
var confined = map[string][]string{
	"github.com/libgit2/git2go":     {"gitops"},
	"github.com/labstack/echo":      {"api", "cmd/refkeeper"},
	"github.com/hibiken/asynq":      {"jobs", "cmd/refkeeper"},
	"github.com/alicebob/miniredis": {"cmd/refkeeper"},
}

// testsToo names the packages that are their tests: what their tests
// import obeys allowedInternal too.
var testsToo = map[string]bool{"systest": true}

type listedPackage struct {
	ImportPath   string
	Dir          string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...", module+"/testdata")
	cmd.Dir = ".."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportDirection(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < len(allowedInternal) {
		t.Fatalf("go list found %d packages, want at least %d", len(pkgs), len(allowedInternal))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allowed, known := allowedInternal[rel]
		if !known {
			t.Errorf("package %s is not in the layout; add it to allowedInternal with its allowed imports", rel)
			continue
		}
		for _, imp := range p.Imports {
			if dep, ok := strings.CutPrefix(imp, module+"/"); ok && !contains(allowed, dep) {
				t.Errorf("%s imports %s; it may import only %v", rel, dep, allowed)
			}
			for lib, owners := range confined {
				if strings.HasPrefix(imp, lib) && !contains(owners, rel) {
					t.Errorf("%s imports %s, which only %v may import", rel, imp, owners)
				}
			}
		}
		if !testsToo[rel] {
			continue
		}
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			if dep, ok := strings.CutPrefix(imp, module+"/"); ok && !contains(allowed, dep) {
				t.Errorf("%s's tests import %s; they may import only %v", rel, dep, allowed)
			}
			// A third-party library of the service's (confined) is its
			// inside; the standard library is the outside's too.
			for lib := range confined {
				if strings.HasPrefix(imp, lib) && strings.Contains(strings.SplitN(lib, "/", 2)[0], ".") {
					t.Errorf("%s's tests import %s: they see the service from outside only", rel, imp)
				}
			}
		}
	}
}

func TestEveryPackageHasDocGo(t *testing.T) {
	for _, p := range listPackages(t) {
		if _, err := os.Stat(filepath.Join(p.Dir, "doc.go")); err != nil {
			t.Errorf("package %s has no doc.go", p.ImportPath)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
