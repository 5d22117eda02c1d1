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
// import: cmd -> api, jobs -> mirrors -> refs -> gitops -> gitexec, api ->
// hooks -> refs and api -> githttp -> refs, gitexec, pktline, packcache,
// one way only.
// refs reaches the mirrors through the interface it declares
// (refs.PinFetcher), so it never imports mirrors or hooks.
var allowedInternal = map[string][]string{
	// gitexec runs every git process; pktline is git's framing. Both are
	// leaves, without cgo, for a cgo-free client binary (cgoFree).
	"gitexec":       {},
	"pktline":       {},
	"watchfile":     {},
	"strictjson":    {},
	"limits":        {}, // the resource bounds: concurrency, the disk floor
	"secretfile":    {}, // the secrets the server generates beside its repos root
	"access":        {"refs", "strictjson", "watchfile"},
	"idtoken":       {"access", "refs"},
	"gitops":        {"gitexec", "limits", "pktline"},
	"refs":          {"gitops"},
	"githttp":       {"refs", "gitexec", "pktline", "limits", "packcache"},
	"packcache":     {"gitexec"},
	"mirrors":       {"refs", "gitops", "strictjson", "watchfile", "limits", "secretfile"},
	"api":           {"access", "githttp", "hooks", "mirrors", "refs", "limits"},
	"ui":            {"access", "mirrors", "refs"},
	"hooks":         {"refs"},
	"jobs":          {"mirrors", "refs"},
	"cmd/refkeeper": {"access", "api", "hooks", "idtoken", "jobs", "mirrors", "refs", "gitops", "gitexec", "cli", "limits", "packcache", "secretfile", "ui"},
	// The client commands (cli) and the job binary that runs them alone:
	// no cgo below them (cgoFree).
	"cli":               {"client", "gitexec"},
	"cmd/refkeeper-job": {"cli"},
	"testdata":          {},
	// systest runs the built binary and talks to it from outside only:
	// its tests may import the test helpers and nothing else of ours.
	"systest": {"testdata"},
	// refstest is the one fixture that builds a pin service for tests.
	"refs/refstest": {"refs", "gitops", "testdata"},
	// client is what users' programs import: nothing of ours.
	"client": {},
	// deploy is the chart, dashboard and rules; its Go files are tests only
	// (they import testdata, which the layout does not list for tests).
	"deploy": {},
}

// processOwner is the one package that starts processes (os/exec) and the
// library the service does not use (net/http/cgi: githttp speaks CGI to
// http-backend over gitexec, so it gets the runner's bound, process group
// and kill grace). Test files and the test helpers (testdata: real git,
// redis-server, an upstream git host) may use both.
var processOwner = map[string][]string{
	"os/exec":      {"gitexec", "testdata"},
	"net/http/cgi": {"testdata"},
}

// cgoFree are the packages a cgo-free binary (the job binary,
// cmd/refkeeper-job, built with CGO_ENABLED=0) may build on: none of their
// dependencies may be git2go.
var cgoFree = []string{"gitexec", "pktline", "client", "cli", "cmd/refkeeper-job"}

// confined names third-party libraries and the only packages that may import
// them, so each can be replaced in one place.
var confined = map[string][]string{
	"github.com/libgit2/git2go":     {"gitops"},
	"github.com/labstack/echo":      {"api", "cmd/refkeeper"},
	"github.com/hibiken/asynq":      {"jobs", "cmd/refkeeper"},
	"github.com/hibiken/asynqmon":   {"cmd/refkeeper"},
	"github.com/alicebob/miniredis": {"cmd/refkeeper"},
	// ID tokens are verified in one place; the test issuer signs them.
	"github.com/coreos/go-oidc":  {"idtoken"},
	"github.com/go-jose/go-jose": {"idtoken", "testdata"},
	// The Kubernetes and prometheus-operator API types check the Helm
	// chart's output; the service itself never speaks to Kubernetes.
	"k8s.io/":                        {"deploy"},
	"sigs.k8s.io/":                   {"deploy"},
	"github.com/prometheus-operator": {"deploy"},
}

// testsToo names the packages that are their tests: what their tests
// import obeys allowedInternal too.
var testsToo = map[string]bool{"systest": true}

type listedPackage struct {
	ImportPath   string
	Dir          string
	Imports      []string // of the non-test files
	TestImports  []string
	XTestImports []string
	Deps         []string
	CgoFiles     []string
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

// TestProcessesStartInOnePlace: no package but gitexec (and the test
// helpers) imports os/exec in its non-test files, none net/http/cgi, so
// every git process is started one way.
func TestProcessesStartInOnePlace(t *testing.T) {
	pkgs := listPackages(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			if owners, ok := processOwner[imp]; ok {
				seen[imp+" "+rel] = true
				if !contains(owners, rel) {
					t.Errorf("%s imports %s, which only %v may import (start git through gitexec)", rel, imp, owners)
				}
			}
		}
	}
	// The check sees imports at all: gitexec's own is among them.
	if !seen["os/exec gitexec"] {
		t.Errorf("go list reports no os/exec import of gitexec; the check proves nothing")
	}
}

// TestCgoFree: the packages a cgo-free binary builds on reach no git2go and
// have no cgo files.
func TestCgoFree(t *testing.T) {
	found := 0
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if !contains(cgoFree, rel) {
			continue
		}
		found++
		if len(p.CgoFiles) > 0 {
			t.Errorf("%s has cgo files %v", rel, p.CgoFiles)
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/libgit2/git2go") {
				t.Errorf("%s depends on %s", rel, d)
			}
		}
	}
	if found != len(cgoFree) {
		t.Errorf("found %d of the cgo-free packages %v", found, cgoFree)
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
