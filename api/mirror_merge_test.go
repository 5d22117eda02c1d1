package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/hooks"
	"github.com/refkeeper/refkeeper/testdata"
)

// mirrorPin PUTs a pin of pipeline id on the mirror mirrors/gh.
func (f *mirrorFixture) mirrorPin(t *testing.T, id int, body string) answer {
	t.Helper()
	return f.do(t, http.MethodPut, fmt.Sprintf("%s/pipelines/%d/ref", mirrorPath, id), body)
}

// mirrorGit runs the git CLI on the mirror mirrors/gh.
func (f *mirrorFixture) mirrorGit(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := gitIn(t, filepath.Join(f.root, "mirrors", "gh.git"), args...)
	return out
}

// nothingWritten fails the test when pipeline id of the mirror has a ref or
// a record.
func (f *mirrorFixture) nothingWritten(t *testing.T, id int) {
	t.Helper()
	if out := f.mirrorGit(t, "for-each-ref", fmt.Sprintf("refs/pipelines/%d", id)); out != "" {
		t.Errorf("a failed pin wrote %s", out)
	}
	if a := f.do(t, http.MethodGet, fmt.Sprintf("%s/pipelines/%d/ref", mirrorPath, id), ""); a.status != http.StatusNotFound {
		t.Errorf("a failed pin left a record: %d %s", a.status, a.raw)
	}
}

// TestMirrorComputedMergeSourceOmitted pins the computed merge of a merge
// request's head ref into main on a github and a gitlab mirror after both
// moved upstream since the clone: the pin has what the host has now, the
// commit is the one the git CLI makes, and a pin made before main moved
// again keeps its own.
func TestMirrorComputedMergeSourceOmitted(t *testing.T) {
	for host, headRef := range map[string]string{"github": "refs/pull/1/head", "gitlab": "refs/merge-requests/1/head"} {
		t.Run(host, func(t *testing.T) {
			f := newMirrorFixture(t, time.Minute)
			u := f.upstream
			f.readyMirror(t, host)
			// After the clone: a new push to the merge request and to main.
			head := u.Repo.Commit(t, "feature", map[string]string{"feature.txt": "newer\n"}, "feature again")
			u.Repo.Git(t, "update-ref", headRef, head)
			main1 := u.Repo.Commit(t, "main", map[string]string{"app.txt": "v3\n"}, "third")
			body := `{"merge": {"target": "main"}, "merge_request_iid": 1}`

			a := f.mirrorPin(t, 1, body)
			want1 := u.Repo.RecomputeMerge(t, head, main1, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
			if a.status != http.StatusCreated || a.body["sha"] != want1 {
				t.Fatalf("pin = %d %s, want 201 at %s (git merge-tree + commit-tree)", a.status, a.raw, want1)
			}
			if m, _ := a.body["merge"].(map[string]any); m["source_sha"] != head || m["target_sha"] != main1 || m["mode"] != "merge" {
				t.Errorf("merge = %v, want %s into %s", a.body["merge"], head, main1)
			}
			if got := f.mirrorGit(t, "rev-parse", "refs/pipelines/1"); got != want1 {
				t.Errorf("refs/pipelines/1 = %s, want %s", got, want1)
			}

			main2 := u.Repo.Commit(t, "main", map[string]string{"app.txt": "v4\n"}, "fourth")
			want2 := u.Repo.RecomputeMerge(t, head, main2, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
			if a := f.mirrorPin(t, 2, body); a.status != http.StatusCreated || a.body["sha"] != want2 {
				t.Fatalf("pin after main moved = %d %s, want 201 at %s", a.status, a.raw, want2)
			}
			if got := f.mirrorGit(t, "rev-parse", "refs/pipelines/1"); got != want1 {
				t.Errorf("refs/pipelines/1 moved to %s, want its own %s", got, want1)
			}
			if a := f.do(t, http.MethodGet, mirrorPath+"/pipelines/1/ref", ""); a.body["sha"] != want1 {
				t.Errorf("GET pipeline 1 = %s, want %s", a.raw, want1)
			}
			// The same inputs by SHA, all here already: the same commit.
			bySHA := `{"merge": {"source": "` + head + `", "target": "` + main1 + `"}}`
			if a := f.mirrorPin(t, 1, bySHA); a.status != http.StatusOK || a.body["sha"] != want1 {
				t.Errorf("pipeline 1 again by SHA = %d %s, want 200 at %s", a.status, a.raw, want1)
			}
		})
	}
}

// TestMirrorComputedMergeFailures: a conflict with a branch only the
// upstream has, a ref the upstream lacks (also one the mirror still has
// from before), a SHA nobody has, refused credentials and a stopped
// upstream each write nothing.
func TestMirrorComputedMergeFailures(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream
	f.readyMirror(t, "github")
	// Off main's first commit, app.txt changed otherwise than main did.
	u.Repo.Git(t, "branch", "clash", u.First)
	u.Repo.Commit(t, "clash", map[string]string{"app.txt": "clash\n"}, "clash")
	// Deleted upstream after the clone: the mirror still has it.
	u.Repo.Git(t, "update-ref", "-d", "refs/heads/feature")
	if f.mirrorGit(t, "rev-parse", "refs/heads/feature") != u.Head {
		t.Fatalf("the mirror lost feature before the test")
	}

	a := f.mirrorPin(t, 1, `{"merge": {"source": "clash", "target": "main"}}`)
	conflicts, _ := a.body["error"].(map[string]any)["conflicts"].([]any)
	if a.status != http.StatusConflict || a.errCode() != "merge_conflict" || !slices.Equal(conflicts, []any{"app.txt"}) {
		t.Errorf("conflict = %d %s, want 409 merge_conflict with app.txt", a.status, a.raw)
	}
	f.nothingWritten(t, 1)

	steps := []struct {
		name, body string
		status     int
		code       string
	}{
		{"branch nobody has", `{"merge": {"source": "nope", "target": "main"}}`, 422, "ref_not_found"},
		{"full ref nobody has", `{"merge": {"target": "refs/pull/9/head"}, "merge_request_iid": 1}`, 422, "ref_not_found"},
		{"head ref upstream lacks", `{"merge": {"target": "main"}, "merge_request_iid": 9}`, 422, "ref_not_found"},
		{"branch gone upstream", `{"merge": {"source": "feature", "target": "main"}}`, 422, "ref_not_found"},
		{"SHA nobody has", `{"merge": {"source": "1f3e000000000000000000000000000000000001", "target": "main"}}`, 422, "commit_not_found"},
	}
	for i, s := range steps {
		a := f.mirrorPin(t, 2+i, s.body)
		if a.status != s.status || a.errCode() != s.code {
			t.Errorf("%s: %d %s, want %d %s", s.name, a.status, a.raw, s.status, s.code)
		}
		f.nothingWritten(t, 2+i)
	}

	// Credentials refused: 502.
	u.SetPassword("rotated")
	if a := f.mirrorPin(t, 10, `{"merge": {"target": "main"}, "merge_request_iid": 1}`); a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" {
		t.Errorf("refused credentials: %d %s, want 502 upstream_rejected", a.status, a.raw)
	}
	f.nothingWritten(t, 10)
	u.SetPassword(testdata.UpstreamPassword)
	// The refusal's pace would answer 502 for a while yet: a PUT of the
	// mirror ends it.
	if a := f.register(t, "github"); a.status != http.StatusOK {
		t.Fatalf("PUT of the mirror: %d %s", a.status, a.raw)
	}

	// The upstream stops: named refs cannot be what the host has now, even
	// though the mirror has copies.
	u.Stop()
	a = f.mirrorPin(t, 11, `{"merge": {"target": "main"}, "merge_request_iid": 1}`)
	if a.status != http.StatusServiceUnavailable || a.errCode() != "upstream_unavailable" || a.header.Get("Retry-After") == "" {
		t.Errorf("upstream stopped: %d %s, want 503 upstream_unavailable with Retry-After", a.status, a.raw)
	}
	f.nothingWritten(t, 11)
	// SHAs the mirror has need no upstream.
	a = f.mirrorPin(t, 12, `{"merge": {"source": "`+u.Head+`", "target": "`+u.Second+`"}}`)
	if want := u.Repo.RecomputeMerge(t, u.Head, u.Second, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail); a.status != http.StatusCreated || a.body["sha"] != want {
		t.Errorf("pin by SHAs here with the upstream stopped: %d %s, want 201 at %s", a.status, a.raw, want)
	}
}

// TestMirrorComputedMergeGenericNeedsSource: a generic host has no head
// ref, so a merge request alone names no source: 400, nothing fetched.
func TestMirrorComputedMergeGenericNeedsSource(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "generic")
	before := f.upstream.Fetches()
	a := f.mirrorPin(t, 1, `{"merge": {"target": "main"}, "merge_request_iid": 1}`)
	if a.status != http.StatusBadRequest || a.errCode() != "invalid_request" || !strings.Contains(a.raw, "merge.source") {
		t.Errorf("source omitted on a generic mirror: %d %s, want 400 invalid_request about merge.source", a.status, a.raw)
	}
	if f.upstream.Fetches() != before {
		t.Errorf("a refused pin fetched from upstream")
	}
	f.nothingWritten(t, 1)
	a = f.mirrorPin(t, 1, `{"merge": {"source": "feature", "target": "main"}, "merge_request_iid": 1}`)
	if a.status != http.StatusCreated {
		t.Errorf("with a source: %d %s, want 201", a.status, a.raw)
	}
}

// TestMirrorGitHubWorkflowRun: a workflow_run delivery for a pull request
// pushed after the clone pins the computed merge of its head SHA, fetched
// by SHA, into its base; a head SHA the upstream lacks fails for good.
func TestMirrorGitHubWorkflowRun(t *testing.T) {
	f := newMirrorFixture(t, time.Minute, withHooks(hooks.GitHub))
	u := f.upstream
	f.readyMirror(t, "github")
	u.Repo.Git(t, "branch", "pr2", u.Second)
	head := u.Repo.Commit(t, "pr2", map[string]string{"pr2.txt": "two\n"}, "pull request 2")
	u.Repo.Git(t, "update-ref", "refs/pull/2/head", head)
	u.Repo.Git(t, "branch", "-D", "pr2") // only the pull ref reaches it, as for a fork
	if out, err := gitIn(t, filepath.Join(f.root, "mirrors", "gh.git"), "cat-file", "-e", head); err == nil {
		t.Fatalf("the mirror has the head already (%s)", out)
	}
	payload := func(headSHA string) []byte {
		body := testdata.HookPayload(t, "github-workflow_run-requested.json", map[string]string{"HEAD_SHA": headSHA, "BASE_SHA": u.Second})
		return bytes.ReplaceAll(body, []byte(`"full_name": "group/app"`), []byte(`"full_name": "mirrors/gh"`))
	}

	a := f.githubHook(t, "workflow_run", "run-1", payload(head))
	want := u.Repo.RecomputeMerge(t, head, u.Second, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	pins, _ := a.body["pins"].([]any)
	if a.status != http.StatusOK || a.body["action"] != "pinned" || len(pins) != 1 || pins[0].(map[string]any)["sha"] != want {
		t.Fatalf("workflow_run requested = %d %s, want pinned at %s", a.status, a.raw, want)
	}
	if got := f.mirrorGit(t, "rev-parse", "refs/pipelines/289782451"); got != want {
		t.Errorf("refs/pipelines/289782451 = %s, want %s", got, want)
	}

	missing := testdata.HookEdit(t, payload(strings.Repeat("cd", 20)), `"id": 289782451`, `"id": 289782452`)
	a = f.githubHook(t, "workflow_run", "run-2", missing)
	if reason, _ := a.body["reason"].(string); a.status != http.StatusOK || a.body["action"] != "failed" || !strings.HasPrefix(reason, "commit_not_found: ") {
		t.Errorf("a head SHA nobody has = %d %s, want 200 failed with commit_not_found", a.status, a.raw)
	}
	f.nothingWritten(t, 289782452)
}

// TestMirrorConcurrentComputedMergesShareFetches: 30 computed merges of one
// mirror at once cause at most 2 upstream fetches, and all are one commit.
func TestMirrorConcurrentComputedMergesShareFetches(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	u := f.upstream
	f.readyMirror(t, "github")
	before := u.Fetches()
	u.Stall() // the first fetch waits until every other pin queued behind it
	const pins = 30
	var wg sync.WaitGroup
	answers := make([]answer, pins)
	for i := range pins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = f.mirrorPin(t, 100+i, `{"merge": {"target": "main"}, "merge_request_iid": 1}`)
		}()
		if i == 0 {
			waitUntil(t, func() bool { return u.Stalled() > 0 })
		}
	}
	dir := filepath.Join(f.root, "mirrors", "gh.git")
	waitUntil(t, func() bool { n, _ := f.projects.Fetcher.Queued(dir); return n == pins-1 })
	u.Release()
	wg.Wait()
	want := u.Repo.RecomputeMerge(t, u.Head, u.Second, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	for i, a := range answers {
		if a.status != http.StatusCreated || a.body["sha"] != want {
			t.Errorf("pin %d: %d %s, want 201 at %s", i, a.status, a.raw, want)
		}
	}
	if got := u.Fetches() - before; got > 2 {
		t.Errorf("%d concurrent computed merges caused %d upstream fetches, want at most 2", pins, got)
	}
}
