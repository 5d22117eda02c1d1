package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/refs"
)

// FuzzDecodePinBody: any body either decodes into a valid request or is a
// 400 (never a panic, never another status), and whatever is accepted holds
// a well-formed SHA and merge request iid.
func FuzzDecodePinBody(f *testing.F) {
	for _, s := range []string{
		`{"sha":"0123456789012345678901234567890123456789"}`, `{"merge_request_iid":12}`,
		`{"sha":null,"merge_request_iid":1}`, `{"sha":1}`, `{"merge_request_iid":"12"}`, `{"merge_request_iid":1e3}`,
		`{"x":1}`, `{} {}`, `[]`, `null`, ``, `{"sha":"HEAD"}`, `{"merge_request_iid":9223372036854775808}`,
		`{"SHA":"0123456789012345678901234567890123456789"}`, `{"Merge_Request_IID":12}`, `{"\u017fha":"0123456789012345678901234567890123456789"}`,
		`{"s\u0068a":"0123456789012345678901234567890123456789"}`,
		`{"merge":{"target":"main"},"merge_request_iid":12}`, `{"merge":{"source":"","target":"main","mode":"squash"}}`,
		`{"merge":{"Target":"main","x":1}}`, `{"merge":null}`, `{"merge":[]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var in pinBody
		err := decodeStrict([]byte(body), &in, false)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		requireExactFields(t, body, "sha", "merge_request_iid", "merge")
		iid, err := parseIID(in.MergeRequestIID)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		if iid < 0 {
			t.Fatalf("negative iid %d from %q", iid, body)
		}
		merge, err := parseMerge(in.Merge, iid)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		if merge != nil && (merge.Target == "" || merge.Source == "" && iid == 0 || merge.Mode != "merge" && merge.Mode != "squash") {
			t.Fatalf("accepted merge %+v from %q", merge, body)
		}
		if in.SHA != nil {
			if _, err := refs.ParseObjectID(*in.SHA); err == nil && len(*in.SHA) != 40 {
				t.Fatalf("accepted sha %q", *in.SHA)
			}
		}
	})
}

// FuzzDecodeFinishBody: the optional finish body is a JSON object with a
// string status, or a 400.
func FuzzDecodeFinishBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"status":"success"}`, `{"status":1}`, `{"status":"x"} trailing`, `{"other":1}`, `{"Status":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var in finishBody
		if err := decodeStrict([]byte(body), &in, true); err != nil {
			requireBadRequest(t, err)
			return
		}
		requireExactFields(t, body, "status")
	})
}

// requireExactFields fails when an accepted body has a key that is not
// exactly one of names (encoding/json would have matched it without regard
// to case).
func requireExactFields(t *testing.T, body string, names ...string) {
	t.Helper()
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &fields) != nil {
		return
	}
	for k := range fields {
		if !slices.Contains(names, k) {
			t.Fatalf("accepted field %q in %q", k, body)
		}
	}
}

// FuzzSplitGitPath: whatever the path, the project part never escapes (it
// is validated later, but it must never carry a service suffix or a query).
func FuzzSplitGitPath(f *testing.F) {
	for _, s := range []string{"/git/group/app.git/info/refs", "/git/a.git/b.git/git-upload-pack", "/git/../x.git/info/refs", "/git/.git/info/refs"} {
		f.Add(s, "service=git-upload-pack")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		name, svc, rest, err := splitGitPath(path, query)
		if err != nil {
			return
		}
		if svc == 0 || !strings.HasPrefix(path, "/git/"+name+".git/") || !strings.HasSuffix(path, rest) {
			t.Fatalf("splitGitPath(%q) = %q %v %q", path, name, svc, rest)
		}
	})
}

func requireBadRequest(t *testing.T, err error) {
	t.Helper()
	var he *httpError
	if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Fatalf("error %v is not a 400", err)
	}
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
		out, err := s.filter(version, body)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.Status < 400 || he.Status > 499 {
				t.Fatalf("refusal is not a 4xx: %v", err)
			}
			return
		}
		lines, err := parsePktLines(out)
		if err != nil {
			t.Fatalf("filter produced a malformed request %q: %v", out, err)
		}
		flushes := 0
		for _, l := range lines {
			if l.kind == pktFlush {
				flushes++
			}
			key, value, _ := strings.Cut(l.text, " ")
			if version != protocolV2 && key == "want" {
				value, _, _ = strings.Cut(value, " ")
				if strings.Contains(l.text, "include-tag") || strings.Contains(l.text, "filter") {
					t.Fatalf("capabilities passed on: %q", l.text)
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
				t.Fatalf("%q passed on", l.text)
			}
			if strings.HasPrefix(l.text, "command=") && l.text != "command=fetch" && l.text != "command=ls-refs" {
				t.Fatalf("%q passed on", l.text)
			}
		}
		if version == protocolV2 && len(lines) > 0 && (flushes != 1 || lines[len(lines)-1].kind != pktFlush) {
			t.Fatalf("not one v2 request: %q", out)
		}
	})
}
