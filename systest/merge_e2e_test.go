package systest

import (
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestComputedMergeEndToEnd pins a computed merge through two replicas
// sharing the repos root and Redis, both with their own --merge-identity:
// they agree on the commit, it is the one the git CLI makes from the same
// values, and a runner fetches and checks it out.
func TestComputedMergeEndToEnd(t *testing.T) {
	p := newProject(t)
	head, _ := p.git.RefSHA(t, "refs/heads/feature")
	p.git.Git(t, "update-ref", "refs/merge-requests/12/head", head)
	r := testdata.StartRedis(t)
	identity := []string{"--merge-identity", "CI Bot <ci@example.org>"}
	one := startServer(t, append([]string{"--repos", p.root, "--redis", r.URL()}, identity...)...)
	two := startServer(t, append([]string{"--repos", p.root, "--redis", r.URL(), "--role", "api"}, identity...)...)

	body := `{"merge":{"target":"main"},"merge_request_iid":12}`
	code, pin := one.call(t, "PUT", apiBase+"/pipelines/7/ref", body)
	if code != 201 {
		t.Fatalf("pin = %d %v", code, pin)
	}
	code, again := two.call(t, "PUT", apiBase+"/pipelines/7/ref", body)
	if code != 200 || again["sha"] != pin["sha"] {
		t.Fatalf("pin on the other replica = %d %v, want 200 at %v", code, again, pin["sha"])
	}
	want := p.git.RecomputeMerge(t, head, p.c2, "merge", "CI Bot", "ci@example.org")
	if pin["sha"] != want {
		t.Fatalf("pinned %v, git merge-tree + commit-tree with the configured identity give %s", pin["sha"], want)
	}

	work := t.TempDir()
	if out, err := testdata.RunnerGit(t, work, "init", "-q", "."); err != nil {
		t.Fatal(out)
	}
	if out, err := testdata.RunnerGit(t, work, "-c", "http.extraHeader=Authorization: Bearer "+testToken,
		"fetch", "-q", "--depth=1", pin["fetch_url"].(string), pin["refspec"].(string)); err != nil {
		t.Fatalf("runner fetch: %v\n%s", err, out)
	}
	if out, err := testdata.RunnerGit(t, work, "checkout", "-q", "--detach", "refs/pipelines/7"); err != nil {
		t.Fatalf("checkout: %v\n%s", err, out)
	}
	if out, _ := testdata.RunnerGit(t, work, "rev-parse", "HEAD"); strings.TrimSpace(out) != want {
		t.Fatalf("HEAD = %s, want %s", out, want)
	}
	if out, _ := testdata.RunnerGit(t, work, "show", "-s", "--format=%an <%ae>|%cn <%ce>|%s", "HEAD"); strings.TrimSpace(out) !=
		"CI Bot <ci@example.org>|CI Bot <ci@example.org>|Merge "+head+" into "+p.c2 {
		t.Errorf("merge commit = %q", out)
	}
}
