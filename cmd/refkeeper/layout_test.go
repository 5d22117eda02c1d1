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
// import: cmd -> api, jobs -> refs -> gitops and api -> hooks -> refs, one
// way only.
var allowedInternal = map[string][]string{
	"gitops":        {},
	"refs":          {"gitops"},
	"api":           {"hooks", "refs"},
	"hooks":         {"refs"},
	"jobs":          {"refs"},
	"cmd/refkeeper": {"api", "hooks", "jobs", "refs", "gitops", "client"},
	"testdata":      {},
	// client is what users' programs import: nothing of ours.
	"client": {},
	// deploy is the chart, dashboard and rules; its Go files are tests only
	// (they import testdata, which the layout does not list for tests).
	"deploy": {},
}

// confined names third-party libraries and the only packages that may import
// them, so each can be replaced in one place.
var confined = map[string][]string{
	"github.com/libgit2/git2go":     {"gitops"},
	"github.com/labstack/echo":      {"api", "cmd/refkeeper"},
	"github.com/hibiken/asynq":      {"jobs", "cmd/refkeeper"},
	"github.com/alicebob/miniredis": {"cmd/refkeeper"},
	// The Kubernetes and prometheus-operator API types check the Helm
	// chart's output; the service itself never speaks to Kubernetes.
	"k8s.io/":                        {"deploy"},
	"sigs.k8s.io/":                   {"deploy"},
	"github.com/prometheus-operator": {"deploy"},
}

type listedPackage struct {
	ImportPath  string
	Dir         string
	Imports     []string
	TestImports []string
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
