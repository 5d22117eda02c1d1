package refstest

import (
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// Project is the fixture's project, testdata.NewMergeRequestProject's.
const Project refs.Project = "group/app"

// Policy is the fixture's policy: an hour's retention, a day's max-age.
var Policy = refs.Policy{Retention: time.Hour, MaxAge: 24 * time.Hour}

// Fixture is a pin service over a real repos root and a real redis-server.
type Fixture struct {
	Service *refs.Service
	// Dir is the repos root, Repos the service's view of it.
	Dir   string
	Repos *gitops.Root
	Store *refs.Store
	Redis *testdata.Redis
	// Git is the merge request project, Project, with its commits.
	Git *testdata.MergeRequestProject
}

// New builds a Fixture with Policy and no scheduler, mirrors, metrics or
// clock (the system clock): set them on Service, Repos and Store before the
// first call.
func New(tb testing.TB) *Fixture {
	tb.Helper()
	dir := tb.TempDir()
	g := testdata.NewMergeRequestProject(tb, dir)
	r := testdata.StartRedis(tb)
	return Over(tb, dir, g, r)
}

// Over builds a Fixture over a repos root and a redis-server the test made
// itself (a second replica of another fixture, say); g may be nil.
func Over(tb testing.TB, dir string, g *testdata.MergeRequestProject, r *testdata.Redis) *Fixture {
	tb.Helper()
	root := &gitops.Root{Dir: dir}
	tb.Cleanup(root.Close)
	store := &refs.Store{Client: r.Client(tb)}
	return &Fixture{
		Service: &refs.Service{Repos: root, Store: store, Policy: Policy},
		Dir:     dir, Repos: root, Store: store, Redis: r, Git: g,
	}
}
