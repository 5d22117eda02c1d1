package gitops

import (
	"errors"
	"strings"
	"testing"
)

func TestParseProjectName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"app", true},
		{"group/app", true},
		{"a/b/c-d_e.f", true},
		{"group/app.gitx", true},
		{"group/app.git-mirror", true},
		{"group/git", true},
		{strings.Repeat("a", 251), true},
		{strings.Repeat("a", 200) + "/" + strings.Repeat("b", 54), true},
		{strings.Repeat("a", 252), false},
		{strings.Repeat("a", 255), false},
		{"group/app.git", false},
		{"app.git", false},
		{"demo/app.git/x", false},
		{"demo/app.git/refs/pipelines/x", false},
		{"", false},
		{strings.Repeat("a", 256), false},
		{"/abs", false},
		{"trailing/", false},
		{"double//slash", false},
		{".", false},
		{"..", false},
		{"a/../b", false},
		{"a/./b", false},
		{".hidden", false},
		{"group/.git", false},
		{"sp ace", false},
		{"nul\x00", false},
		{"back\\slash", false},
		{"%2E%2E", false},
		{"ümlaut", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseProjectName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseProjectName(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && string(got) != tt.in {
				t.Fatalf("ParseProjectName(%q) = %q", tt.in, got)
			}
		})
	}
}

func TestParseObjectID(t *testing.T) {
	valid := strings.Repeat("ab", 20)
	tests := []struct {
		in   string
		want ObjectID
		ok   bool
	}{
		{valid, ObjectID(valid), true},
		{strings.ToUpper(valid), ObjectID(valid), true},
		{valid[:39], "", false},
		{valid + "a", "", false},
		{strings.Repeat("g", 40), "", false},
		{"HEAD", "", false},
		{"refs/heads/main", "", false},
		{string(ZeroID), "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseObjectID(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseObjectID(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseDecimalID(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1", 1, true},
		{"7", 7, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"0", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"01", 0, false},
		{"1e3", 0, false},
		{"0x10", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDecimalID(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseDecimalID(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, errBadID) {
				t.Fatalf("error %v is not a bad-id error", err)
			}
		})
	}
}

func TestPipelineRefRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 42, 9223372036854775807} {
		ref := PipelineRef(id)
		got, ok := ParsePipelineRef(ref)
		if !ok || got != id {
			t.Fatalf("ParsePipelineRef(%s) = %d, %v", ref, got, ok)
		}
	}
	for _, ref := range []RefName{"refs/heads/main", "refs/pipelines/", "refs/pipelines/01", "refs/pipelines/1/x", "refs/merge-requests/1/merge"} {
		if _, ok := ParsePipelineRef(ref); ok {
			t.Fatalf("ParsePipelineRef(%s) accepted", ref)
		}
	}
}

func TestProjectPattern(t *testing.T) {
	for _, bad := range []string{"", "/*", "group/", "group/**", "*/app", "gr*up", "group/../*", ".hidden/*", "group/*/app"} {
		if _, err := ParseProjectPattern(bad); err == nil {
			t.Errorf("ParseProjectPattern(%q) accepted", bad)
		}
	}
	tests := []struct {
		pattern string
		match   []ProjectName
		miss    []ProjectName
	}{
		{"*", []ProjectName{"app", "group/app", "a/b/c"}, nil},
		{"group/app", []ProjectName{"group/app"}, []ProjectName{"group/app2", "group/app/sub", "group", "other/group/app"}},
		{"group/*", []ProjectName{"group/app", "group/sub/app"}, []ProjectName{"group", "groupie/app", "other/group/app"}},
		{"a/b/*", []ProjectName{"a/b/c", "a/b/c/d"}, []ProjectName{"a/b", "a/bc/d", "a/c/b"}},
	}
	for _, tt := range tests {
		pat, err := ParseProjectPattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParseProjectPattern(%q): %v", tt.pattern, err)
		}
		for _, p := range tt.match {
			if !pat.Match(p) || !MatchAny([]ProjectPattern{"x/y", pat}, p) {
				t.Errorf("%q does not match %q", tt.pattern, p)
			}
		}
		for _, p := range tt.miss {
			if pat.Match(p) || MatchAny([]ProjectPattern{pat}, p) {
				t.Errorf("%q matches %q", tt.pattern, p)
			}
		}
	}
}
