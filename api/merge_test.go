package api_test

import (
	"slices"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// withHead points refs/merge-requests/12/head at the feature branch, as
// GitLab keeps it, and answers its SHA.
func (f *fixture) withHead(t *testing.T) string {
	t.Helper()
	head, _ := f.git.RefSHA(t, "refs/heads/feature")
	f.git.Git(t, "update-ref", "refs/merge-requests/12/head", head)
	return head
}

func TestPinComputedMerge(t *testing.T) {
	f := newFixture(t)
	head := f.withHead(t)
	body := `{"merge":{"target":"main"},"merge_request_iid":12}`
	a := f.do(t, "PUT", p+"/pipelines/7/ref", body)
	if a.status != 201 {
		t.Fatalf("pin = %d %s", a.status, a.raw)
	}
	want := f.git.RecomputeMerge(t, head, f.c2, "merge", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	if a.body["sha"] != want {
		t.Fatalf("sha = %v, git merge-tree + commit-tree give %s", a.body["sha"], want)
	}
	merge, _ := a.body["merge"].(map[string]any)
	if merge["source_sha"] != head || merge["target_sha"] != f.c2 || merge["mode"] != "merge" || len(merge) != 3 {
		t.Errorf("merge = %v", a.body["merge"])
	}
	if got, _ := f.git.RefSHA(t, "refs/pipelines/7"); got != want {
		t.Errorf("refs/pipelines/7 = %s, want %s", got, want)
	}
	if a := f.do(t, "GET", p+"/pipelines/7/ref", ""); a.status != 200 || a.body["merge"] == nil {
		t.Errorf("GET = %d %s, want the merge", a.status, a.raw)
	}

	steps := []struct {
		name, body string
		status     int
		code       string
	}{
		{"same inputs", body, 200, ""},
		{"same inputs by SHA", `{"merge":{"source":"` + head + `","target":"` + f.c2 + `","mode":"merge"}}`, 200, ""},
		{"other mode", `{"merge":{"target":"main","mode":"squash"},"merge_request_iid":12}`, 409, "ref_conflict"},
		{"other target", `{"merge":{"source":"feature","target":"` + f.c1 + `"}}`, 409, "ref_conflict"},
	}
	for _, s := range steps {
		a := f.do(t, "PUT", p+"/pipelines/7/ref", s.body)
		if a.status != s.status || a.errCode() != s.code {
			t.Errorf("%s: %d %s, want %d %s", s.name, a.status, a.raw, s.status, s.code)
		}
		if s.status == 200 && a.body["sha"] != want {
			t.Errorf("%s: sha %v, want %s", s.name, a.body["sha"], want)
		}
	}

	a = f.do(t, "PUT", p+"/pipelines/8/ref", `{"merge":{"source":"feature","target":"main","mode":"squash"}}`)
	squash := f.git.RecomputeMerge(t, head, f.c2, "squash", testdata.DefaultMergeName, testdata.DefaultMergeEmail)
	if a.status != 201 || a.body["sha"] != squash || a.body["merge"].(map[string]any)["mode"] != "squash" {
		t.Errorf("squash pin = %d %s, want sha %s", a.status, a.raw, squash)
	}

	// A pin by SHA has "merge": null.
	a = f.do(t, "PUT", p+"/pipelines/9/ref", `{"sha":"`+f.c1+`"}`)
	if v, ok := a.body["merge"]; a.status != 201 || !ok || v != nil {
		t.Errorf("pin by SHA = %d %s, want merge null", a.status, a.raw)
	}
}

func TestPinComputedMergeFailuresWriteNothing(t *testing.T) {
	f := newFixture(t)
	f.withHead(t)
	f.git.Git(t, "branch", "conflict", f.c1)
	conflicting := f.git.Commit(t, "conflict", map[string]string{"app.txt": "other\n"}, "conflicting edit")
	unrelated := f.git.Commit(t, "orphan", map[string]string{"other.txt": "x\n"}, "no common history")
	tree := f.git.TreeOf(t, f.c1)
	const missing = "1234567890123456789012345678901234567890"
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"conflict", `{"merge":{"source":"` + conflicting + `","target":"main"}}`, 409, "merge_conflict"},
		{"unrelated", `{"merge":{"source":"` + unrelated + `","target":"main"}}`, 409, "merge_conflict"},
		{"target ref missing", `{"merge":{"source":"feature","target":"nope"}}`, 422, "ref_not_found"},
		{"no head ref", `{"merge":{"target":"main"},"merge_request_iid":13}`, 422, "ref_not_found"},
		{"missing commit", `{"merge":{"source":"feature","target":"` + missing + `"}}`, 422, "commit_not_found"},
		{"tree", `{"merge":{"source":"` + tree + `","target":"main"}}`, 422, "commit_not_found"},
		{"bad mode", `{"merge":{"source":"feature","target":"main","mode":"rebase"}}`, 400, "invalid_request"},
		{"empty mode", `{"merge":{"source":"feature","target":"main","mode":""}}`, 400, "invalid_request"},
		{"sha and merge", `{"sha":"` + f.c1 + `","merge":{"source":"feature","target":"main"}}`, 400, "invalid_request"},
		{"unknown field", `{"merge":{"source":"feature","target":"main","strategy":"ort"}}`, 400, "invalid_request"},
		{"miscased field", `{"merge":{"Source":"feature","target":"main"}}`, 400, "invalid_request"},
		{"empty source", `{"merge":{"source":"","target":"main"},"merge_request_iid":12}`, 400, "invalid_request"},
		{"empty target", `{"merge":{"source":"feature","target":""}}`, 400, "invalid_request"},
		{"no target", `{"merge":{"source":"feature"}}`, 400, "invalid_request"},
		{"no source, no merge request", `{"merge":{"target":"main"}}`, 400, "invalid_request"},
		{"bad ref name", `{"merge":{"source":"a..b","target":"main"}}`, 400, "invalid_request"},
		{"source not a string", `{"merge":{"source":1,"target":"main"}}`, 400, "invalid_request"},
		{"merge not an object", `{"merge":"main"}`, 400, "invalid_request"},
	}
	for _, c := range cases {
		a := f.do(t, "PUT", p+"/pipelines/7/ref", c.body)
		if a.status != c.status || a.errCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, a.status, a.raw, c.status, c.code)
			continue
		}
		e, _ := a.body["error"].(map[string]any)
		conflicts, has := e["conflicts"]
		if c.code == "merge_conflict" {
			paths, _ := conflicts.([]any)
			want := []any{"app.txt"}
			if c.name == "unrelated" {
				want = []any{}
			}
			if !has || !slices.Equal(paths, want) {
				t.Errorf("%s: conflicts = %v, want %v", c.name, conflicts, want)
			}
		} else if has {
			t.Errorf("%s: conflicts in a %s error", c.name, c.code)
		}
	}
	if refs := f.git.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Errorf("failed pins left refs: %v", refs)
	}
	keys := f.redis.Client(t).Keys(t.Context(), "*pin:*").Val()
	if len(keys) != 0 {
		t.Errorf("failed pins left records: %v", keys)
	}
	if a := f.do(t, "GET", p+"/pipelines/7/ref", ""); a.status != 404 {
		t.Errorf("GET after failures = %d %s", a.status, a.raw)
	}
}
