package gitops

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseProjectName: whatever is accepted joins to a path inside the root
// and round-trips unchanged.
func FuzzParseProjectName(f *testing.F) {
	for _, s := range []string{"group/app", "..", "a/../b", "/etc/passwd", "a\x00b", "%2E%2E", "a//b", ".git", "x/", "demo/app.git/x", "app.git"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProjectName(s)
		if err != nil {
			return
		}
		if string(p) != s || len(s) > MaxProjectNameLen {
			t.Fatalf("accepted %q as %q", s, p)
		}
		// Joining must not normalise anything away: no "..", no "//".
		if joined := filepath.Join("/root", s+".git"); joined != "/root/"+s+".git" {
			t.Fatalf("accepted %q does not join verbatim: %s", s, joined)
		}
		segs := strings.Split(s, "/")
		for _, seg := range segs {
			// A segment ending in .git would put a project inside
			// another's repository.
			if seg == "" || seg[0] == '.' || strings.HasSuffix(seg, ".git") {
				t.Fatalf("accepted %q with segment %q", s, seg)
			}
		}
		if last := segs[len(segs)-1]; len(last+".git") > 255 {
			t.Fatalf("accepted %q, whose repository's name %q does not fit in a directory entry", s, last+".git")
		}
	})
}

// FuzzParseDecimalID: accepted ids are exactly the canonical decimal form of
// a positive int64.
func FuzzParseDecimalID(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "01", "+1", "1e3", "0x10", "9223372036854775807", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseDecimalID(s)
		if err != nil {
			return
		}
		if id < 1 || strconv.FormatInt(id, 10) != s {
			t.Fatalf("accepted %q as %d", s, id)
		}
	})
}

// FuzzParseObjectID: accepted SHAs are 40 lower-case hex digits, never zero.
func FuzzParseObjectID(f *testing.F) {
	for _, s := range []string{strings.Repeat("a", 40), "HEAD", strings.Repeat("0", 40), strings.Repeat("G", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseObjectID(s)
		if err != nil {
			return
		}
		if len(id) != 40 || id == ZeroID || strings.ToLower(s) != string(id) || strings.Trim(string(id), "0123456789abcdef") != "" {
			t.Fatalf("accepted %q as %q", s, id)
		}
	})
}
