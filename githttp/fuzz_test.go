package githttp

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/pktline"
)

// FuzzSplitGitPath: whatever the path, the project part never escapes (it
// is validated later, but it must never carry a service suffix or a query).
func FuzzSplitGitPath(f *testing.F) {
	for _, s := range []string{"/git/group/app.git/info/refs", "/git/a.git/b.git/git-upload-pack", "/git/../x.git/info/refs", "/git/.git/info/refs"} {
		f.Add(s, "service=git-upload-pack")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		name, svc, rest, err := splitPath(path, query)
		if err != nil {
			return
		}
		if svc == 0 || !strings.HasPrefix(path, "/git/"+name+".git/") || !strings.HasSuffix(path, rest) {
			t.Fatalf("splitPath(%q) = %q %v %q", path, name, svc, rest)
		}
	})
}

// FuzzFetchScopeFilter: whatever body a fetch token sends, in either
// protocol version, what git would be given is one well-formed request
// that wants nothing but the pinned SHA or ref, names no other object
// (here the pinned commit reaches nothing), asks no tag and measures
// against no other ref; anything else is refused with a 4xx.
func FuzzFetchScopeFilter(f *testing.F) {
	const pinned, other = "473270b47d048c09880c77666a88b57369fd51f0", "d66f52409a6899f48124783f52a721a1df97cb08"
	enc := func(lines ...string) string {
		var b strings.Builder
		for _, l := range lines {
			if l == "0000" || l == "0001" || l == "0002" {
				b.WriteString(l)
			} else {
				fmt.Fprintf(&b, "%04x%s", len(l)+4, l)
			}
		}
		return b.String()
	}
	for _, v := range []int{0, 2} {
		for _, body := range []string{
			enc("command=fetch\n", "0001", "want "+pinned+"\n", "include-tag\n", "have "+other+"\n", "done\n", "0000"),
			enc("command=fetch\n", "0001", "want "+other+"\n", "0000"),
			enc("command=ls-refs\n", "0001", "ref-prefix refs/\n", "0000"),
			enc("command=object-info\n", "0001", "oid "+other+"\n", "0000"),
			enc("want "+pinned+" include-tag side-band-64k\n", "deepen 1\n", "0000", "have "+other+"\n", "done\n"),
			enc("want "+pinned+"\n", "want "+other+"\n", "0000", "done\n"),
			enc("want "+pinned+" no-progress\n", "want "+pinned+" include-tag\n", "0000", "done\n"),
			enc("command=fetch\n", "0001", "want "+pinned+"\n", "0000") + enc("command=fetch\n", "0001", "want "+other+"\n", "0000"),
			"0000", "", "0001", "00", "zzzz", "0005\x00",
		} {
			f.Add(v, []byte(body))
		}
	}
	s := fetchScope{ref: "refs/pipelines/7", sha: pinned}
	f.Fuzz(func(t *testing.T, version int, body []byte) {
		out, _, err := s.filter(version, body)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Status < 400 || he.Status > 499 {
				t.Fatalf("refusal is not a 4xx: %v", err)
			}
			return
		}
		lines, err := decodeRequest(out)
		if err != nil {
			t.Fatalf("filter produced a malformed request %q: %v", out, err)
		}
		flushes := 0
		for _, l := range lines {
			if l.Kind == pktline.Flush {
				flushes++
			}
			key, value, _ := strings.Cut(l.Text(), " ")
			if version != protocolV2 && key == "want" {
				value, _, _ = strings.Cut(value, " ")
				if strings.Contains(l.Text(), "include-tag") || strings.Contains(l.Text(), "filter") {
					t.Fatalf("capabilities passed on: %q", l.Text())
				}
			}
			switch key {
			case "have":
				if value != pinned && value != noObject {
					t.Fatalf("have %s passed on", value)
				}
			case "want", "shallow":
				if value != pinned {
					t.Fatalf("%s %s passed on", key, value)
				}
			case "want-ref":
				if value != s.ref {
					t.Fatalf("want-ref %s passed on", value)
				}
			case "ref-prefix":
				if value != s.ref {
					t.Fatalf("ref-prefix %s passed on", value)
				}
			case "include-tag", "deepen-not", "filter", "oid":
				t.Fatalf("%q passed on", l.Text())
			}
			if strings.HasPrefix(l.Text(), "command=") && l.Text() != "command=fetch" && l.Text() != "command=ls-refs" {
				t.Fatalf("%q passed on", l.Text())
			}
		}
		if version == protocolV2 && len(lines) > 0 && (flushes != 1 || lines[len(lines)-1].Kind != pktline.Flush) {
			t.Fatalf("not one v2 request: %q", out)
		}
	})
}
