package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/api"
)

// pkt encodes git pkt-lines: "0000" (flush) and "0001" (delim) pass as
// they are, every other string becomes one data packet.
func pkt(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		if l == "0000" || l == "0001" {
			b.WriteString(l)
			continue
		}
		fmt.Fprintf(&b, "%04x%s", len(l)+4, l)
	}
	return b.String()
}

// v2Fetch is the body of a protocol v2 fetch request with args.
func v2Fetch(args ...string) string {
	return pkt(append([]string{"command=fetch\n", "object-format=sha1\n", "0001", "no-progress\n"}, append(args, "0000")...)...)
}

// v0Fetch is the body of a protocol v0 stateless fetch: wants (the first
// with caps), then a flush, then haves and done.
func v0Fetch(caps string, wants []string, after ...string) string {
	var lines []string
	for i, w := range wants {
		if i == 0 {
			w += " " + caps
		}
		lines = append(lines, "want "+w+"\n")
	}
	lines = append(lines, "0000")
	return pkt(append(lines, after...)...)
}

// scopedFixture is a fixture with pipeline 7 pinned at the merge, another
// pin (8) at First, a branch "secret" no pin reaches, and an annotated tag
// of the merge, hidden from a fetch token.
type scopedFixture struct {
	*fixture
	scoped, secret, tag string
}

func newScopedFixture(t *testing.T) *scopedFixture {
	t.Helper()
	f := newFixture(t)
	secret := f.git.Commit(t, "secret", map[string]string{"key.txt": "hidden\n"}, "not reachable from any pin")
	tag := f.git.AnnotatedTag(t, "v-hidden", f.merge)
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`)
	if pin.status != 201 {
		t.Fatalf("pin = %d %s", pin.status, pin.raw)
	}
	if a := f.do(t, "PUT", p+"/pipelines/8/ref", `{"sha":"`+f.c1+`"}`); a.status != 201 {
		t.Fatalf("pin 8 = %d %s", a.status, a.raw)
	}
	scoped, _ := pin.body["fetch_token"].(string)
	return &scopedFixture{fixture: f, scoped: scoped, secret: secret, tag: tag}
}

// uploadPack POSTs body to git-upload-pack with exactly the headers given
// (their names spelled as given, in the order given) and answers the
// status and the raw body.
func (f *fixture) uploadPack(t *testing.T, bearer string, headers [][2]string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", f.srv.URL+"/git/group/app.git/git-upload-pack", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// Assigned, not Set: Set would canonicalize the spellings under test.
	req.Header = http.Header{}
	req.Header["Authorization"] = []string{"Bearer " + bearer}
	req.Header["Content-Type"] = []string{"application/x-git-upload-pack-request"}
	for _, h := range headers {
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// packOf takes the pack out of an upload-pack answer: in v2 the side-band
// data after the "packfile" line, in v0 (no side-band asked) the bytes
// after the last ACK/NAK line. nil when there is none.
func packOf(t *testing.T, answer []byte) []byte {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(answer))
	var pack []byte
	inPack := false
	for {
		head := make([]byte, 4)
		if _, err := io.ReadFull(r, head); err != nil {
			return pack
		}
		if string(head) == "PACK" { // v0 without side-band: the rest is the pack
			rest, _ := io.ReadAll(r)
			return append(head, rest...)
		}
		n, err := strconv.ParseUint(string(head), 16, 16)
		if err != nil {
			t.Fatalf("not a pkt-line answer at %q: %q", head, answer)
		}
		if n < 4 {
			continue
		}
		data := make([]byte, n-4)
		if _, err := io.ReadFull(r, data); err != nil {
			t.Fatalf("short pkt-line: %v", err)
		}
		switch {
		case inPack && len(data) > 0 && data[0] == 1:
			pack = append(pack, data[1:]...)
		case string(data) == "packfile\n":
			inPack = true
		}
	}
}

// packObjects lists the objects of a pack, read by the real git.
func packObjects(t *testing.T, pack []byte) []string {
	t.Helper()
	if len(pack) == 0 {
		return nil
	}
	dir := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	file := filepath.Join(dir, "in.pack")
	if err := os.WriteFile(file, pack, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", dir, "index-pack", file).CombinedOutput(); err != nil {
		t.Fatalf("index-pack: %v: %s", err, out)
	}
	out, err := exec.Command("git", "-C", dir, "verify-pack", "-v", strings.TrimSuffix(file, ".pack")+".idx").Output()
	if err != nil {
		t.Fatalf("verify-pack: %v", err)
	}
	var objs []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 2 && len(f[0]) == 40 {
			objs = append(objs, f[0])
		}
	}
	return objs
}

// headerSpellings are the ways a client can name the protocol header: the
// canonical one, others net/http keeps apart but net/http/cgi maps to the
// same HTTP_GIT_PROTOCOL, duplicates, and a pair that disagrees.
var headerSpellings = []struct {
	name    string
	headers [][2]string
}{
	{"none", nil},
	{"Git-Protocol", [][2]string{{"Git-Protocol", "version=2"}}},
	{"git-protocol", [][2]string{{"git-protocol", "version=2"}}},
	{"GIT-PROTOCOL", [][2]string{{"GIT-PROTOCOL", "version=2"}}},
	{"GIT_PROTOCOL", [][2]string{{"GIT_PROTOCOL", "version=2"}}},
	{"Git_Protocol", [][2]string{{"Git_Protocol", "version=2"}}},
	{"git_protocol", [][2]string{{"git_protocol", "version=2"}}},
	{"duplicated", [][2]string{{"Git-Protocol", "version=2"}, {"Git-Protocol", "version=2"}}},
	{"v0 then v2", [][2]string{{"Git-Protocol", "version=0"}, {"Git-Protocol", "version=2"}}},
	{"colon list", [][2]string{{"Git-Protocol", "version=0:version=2"}}},
	{"canonical v0, underscore v2", [][2]string{{"Git-Protocol", "version=0"}, {"Git_Protocol", "version=2"}}},
	{"underscore v0, canonical v2", [][2]string{{"Git_Protocol", "version=0"}, {"Git-Protocol", "version=2"}}},
	{"two underscore spellings", [][2]string{{"Git_Protocol", "version=2"}, {"GIT_PROTOCOL", "version=2"}}},
}

// TestScopedFetchRawHeaders: whatever protocol header a fetch token's
// request carries, a want of a commit the pin does not reach gets no pack.
func TestScopedFetchRawHeaders(t *testing.T) {
	f := newScopedFixture(t)
	bodies := map[string]string{
		"v2 want secret":       v2Fetch("want "+f.secret+"\n", "done\n"),
		"v2 want-ref secret":   v2Fetch("want-ref refs/heads/secret\n", "done\n"),
		"v2 want pin 8":        v2Fetch("want-ref refs/pipelines/8\n", "done\n"),
		"v0 want secret":       v0Fetch("no-progress", []string{f.secret}, "done\n"),
		"v0 want pinned+other": v0Fetch("no-progress", []string{f.merge, f.secret}, "done\n"),
	}
	for _, h := range headerSpellings {
		for name, body := range bodies {
			t.Run(h.name+"/"+name, func(t *testing.T) {
				status, answer := f.uploadPack(t, f.scoped, h.headers, body)
				if status == 200 {
					objs := packObjects(t, packOf(t, answer))
					t.Fatalf("answered 200 with %d objects (the secret among them: %v)", len(objs), slices.Contains(objs, f.secret))
				}
				if status != 403 && status != 400 || !bytes.Contains(answer, []byte(`"error"`)) || bytes.Contains(answer, []byte("PACK")) {
					t.Fatalf("answer %d %q, want a 4xx JSON refusal", status, answer)
				}
			})
		}
	}
}

// gzipped compresses a request body as git does for large negotiations.
func gzipped(t *testing.T, body string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestScopedFetchRules: with a fetch token, a request (v2 mostly, v0 where
// it differs) is held to the pin line by line: what is answered, what is
// refused, what is dropped.
func TestScopedFetchRules(t *testing.T) {
	f := newScopedFixture(t)
	v2 := [][2]string{{"Git-Protocol", "version=2"}}
	fetched := func(t *testing.T, bearer string, headers [][2]string, body string) []string {
		t.Helper()
		status, answer := f.uploadPack(t, bearer, headers, body)
		if status != 200 {
			t.Fatalf("answer %d %s", status, answer)
		}
		return packObjects(t, packOf(t, answer))
	}
	t.Run("want the pinned SHA", func(t *testing.T) {
		objs := fetched(t, f.scoped, v2, v2Fetch("want "+f.merge+"\n", "done\n"))
		if !slices.Contains(objs, f.merge) || slices.Contains(objs, f.secret) {
			t.Fatalf("pack of %d objects, merge %v, secret %v", len(objs), slices.Contains(objs, f.merge), slices.Contains(objs, f.secret))
		}
	})
	t.Run("want-ref the pinned ref", func(t *testing.T) {
		// It passes the check and is answered as the contract says: the
		// pinned commit's pack, with the wanted-refs section naming it.
		status, answer := f.uploadPack(t, f.scoped, v2, v2Fetch("want-ref refs/pipelines/7\n", "done\n"))
		if status != 200 || !bytes.Contains(answer, []byte("wanted-refs\n")) || !bytes.Contains(answer, []byte(f.merge+" refs/pipelines/7\n")) {
			t.Fatalf("want-ref answer %d %q", status, answer)
		}
		objs := packObjects(t, packOf(t, answer))
		if !slices.Contains(objs, f.merge) || slices.Contains(objs, f.secret) {
			t.Fatalf("pack of %d objects, merge %v, secret %v", len(objs), slices.Contains(objs, f.merge), slices.Contains(objs, f.secret))
		}
	})
	t.Run("include-tag of a hidden tag", func(t *testing.T) {
		// The same request with the API token gets the tag: the test can fail.
		if objs := fetched(t, token, v2, v2Fetch("want "+f.merge+"\n", "include-tag\n", "done\n")); !slices.Contains(objs, f.tag) {
			t.Fatal("the API token's pack lacks the tag: include-tag proves nothing here")
		}
		if objs := fetched(t, f.scoped, v2, v2Fetch("want "+f.merge+"\n", "include-tag\n", "done\n")); slices.Contains(objs, f.tag) {
			t.Fatal("include-tag sent a hidden annotated tag")
		}
		if objs := fetched(t, f.scoped, nil, v0Fetch("no-progress include-tag", []string{f.merge}, "done\n")); slices.Contains(objs, f.tag) || !slices.Contains(objs, f.merge) {
			t.Fatal("v0 include-tag sent a hidden annotated tag, or no merge")
		}
		// upload-pack reads capabilities from every want line.
		second := pkt("want "+f.merge+" no-progress\n", "want "+f.merge+" include-tag\n", "0000", "done\n")
		if objs := fetched(t, token, nil, second); !slices.Contains(objs, f.tag) {
			t.Fatal("include-tag on a second want line is ignored by git: the case proves nothing")
		}
		if objs := fetched(t, f.scoped, nil, second); slices.Contains(objs, f.tag) {
			t.Fatal("include-tag on a second v0 want line sent a hidden annotated tag")
		}
	})
	t.Run("have of a hidden commit", func(t *testing.T) {
		body := v2Fetch("want "+f.merge+"\n", "have "+f.secret+"\n")
		if _, answer := f.uploadPack(t, token, v2, body); !bytes.Contains(answer, []byte("ACK "+f.secret)) {
			t.Fatalf("the API token's answer does not acknowledge the have: the test proves nothing: %q", answer)
		}
		if status, answer := f.uploadPack(t, f.scoped, v2, body); status != 200 || bytes.Contains(answer, []byte(f.secret)) {
			t.Fatalf("answer %d %q names the hidden commit", status, answer)
		}
	})
	t.Run("have of a commit the pin reaches", func(t *testing.T) {
		// Acknowledged: it tells only what the token may read anyway.
		status, answer := f.uploadPack(t, f.scoped, v2, v2Fetch("want "+f.merge+"\n", "have "+f.c1+"\n"))
		if status != 200 || !bytes.Contains(answer, []byte("ACK "+f.c1)) {
			t.Fatalf("answer %d %q, want an ACK of %s", status, answer, f.c1)
		}
		// Not when a shallow line was dropped: the pack must then be whole.
		status, answer = f.uploadPack(t, f.scoped, v2, v2Fetch("want "+f.merge+"\n", "shallow "+f.secret+"\n", "have "+f.c1+"\n"))
		if status != 200 || bytes.Contains(answer, []byte("ACK ")) || bytes.Contains(answer, []byte(f.secret)) {
			t.Fatalf("answer %d %q, want no ACK", status, answer)
		}
	})
	t.Run("full access is unchanged", func(t *testing.T) {
		if objs := fetched(t, token, v2, v2Fetch("want "+f.secret+"\n", "done\n")); !slices.Contains(objs, f.secret) {
			t.Fatal("the API token cannot fetch by SHA over v2")
		}
	})
	t.Run("gzip body", func(t *testing.T) {
		gz := append(slices.Clip(v2), [2]string{"Content-Encoding", "gzip"})
		if objs := fetched(t, f.scoped, gz, gzipped(t, v2Fetch("want "+f.merge+"\n", "done\n"))); !slices.Contains(objs, f.merge) {
			t.Fatal("gzip request without the merge")
		}
		if status, _ := f.uploadPack(t, f.scoped, gz, gzipped(t, v2Fetch("want "+f.secret+"\n", "done\n"))); status != 403 {
			t.Fatalf("gzip want of the secret = %d", status)
		}
	})
	t.Run("ls-refs shows only the pin", func(t *testing.T) {
		for _, args := range [][]string{nil, {"peel\n", "symrefs\n"}, {"ref-prefix refs/heads/\n"}, {"ref-prefix refs/\n", "unborn\n"}} {
			body := pkt(append(append([]string{"command=ls-refs\n", "0001"}, args...), "0000")...)
			status, answer := f.uploadPack(t, f.scoped, v2, body)
			if status != 200 {
				t.Fatalf("ls-refs %q = %d %s", args, status, answer)
			}
			for line := range strings.Lines(string(answer)) {
				if strings.Contains(line, "refs/") && !strings.Contains(line, f.merge+" refs/pipelines/7") {
					t.Fatalf("ls-refs %q listed %q", args, line)
				}
			}
		}
		_, full := f.uploadPack(t, token, v2, pkt("command=ls-refs\n", "0001", "0000"))
		if !bytes.Contains(full, []byte("refs/heads/secret")) {
			t.Fatalf("the API token's ls-refs lacks refs/heads/secret: %q", full)
		}
	})
	for _, c := range []struct{ name, body string }{
		{"want a reachable commit not pinned", v2Fetch("want "+f.c1+"\n", "done\n")},
		{"want the secret", v2Fetch("want "+f.secret+"\n", "done\n")},
		{"want-ref another pin", v2Fetch("want-ref refs/pipelines/8\n", "done\n")},
		{"want-ref HEAD", v2Fetch("want-ref HEAD\n", "done\n")},
		{"deepen-not", v2Fetch("want "+f.merge+"\n", "deepen 5\n", "deepen-not refs/heads/secret\n", "done\n")},
		{"filter", v2Fetch("want "+f.merge+"\n", "filter blob:none\n", "done\n")},
		{"object-info", pkt("command=object-info\n", "0001", "size\n", "oid "+f.secret+"\n", "0000")},
		{"bundle-uri", pkt("command=bundle-uri\n", "0000")},
		{"two commands", v2Fetch("want "+f.merge+"\n", "done\n") + v2Fetch("want "+f.secret+"\n", "done\n")},
		{"command twice", pkt("command=ls-refs\n", "command=fetch\n", "0001", "want "+f.secret+"\n", "done\n", "0000")},
		{"response-end packet", pkt("command=fetch\n", "0001", "want "+f.merge+"\n") + "0002" + pkt("want "+f.secret+"\n", "0000")},
		{"no command", pkt("agent=x\n", "0001", "want "+f.secret+"\n", "0000")},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, answer := f.uploadPack(t, f.scoped, v2, c.body)
			if status != 403 && status != 400 || bytes.Contains(answer, []byte("PACK")) {
				t.Fatalf("answer %d %q, want a refusal", status, answer)
			}
		})
	}
}

// TestGitBackendEnvironment: git http-backend (here a wrapper that writes
// down the environment and arguments it was given, then runs the real git)
// sees no variable of the server's own environment, only the git runner's
// allow list and the CGI variables http-backend reads; no header but
// Content-Type and the protocol version the server read; no token; and
// runs with hooks off (and a fetch token's scope) on its command line.
func TestGitBackendEnvironment(t *testing.T) {
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	dumps := t.TempDir()
	wrapper := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/environ > " + dumps + "/env.$$\necho \"$*\" > " + dumps + "/argv.$$\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	const apiSecret, keySecret = "env-test-api-token-0123456789", "env-test-fetch-key-0123456789"
	t.Setenv("REFKEEPER_API_TOKENS", apiSecret)
	t.Setenv("REFKEEPER_FETCH_TOKEN_KEYS", keySecret)
	t.Setenv("GIT_CONFIG_PARAMETERS", "'uploadpack.allowanysha1inwant'='true'")
	t.Setenv("GIT_DIR", "/nonexistent")
	f := newFixture(t, func(c *api.Config) { c.GitBinary = wrapper })
	secret := f.git.Commit(t, "secret", map[string]string{"key.txt": "hidden\n"}, "not reachable from any pin")
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`)
	scoped, _ := pin.body["fetch_token"].(string)

	spoof := [][2]string{{"Git_Protocol", "version=2"}, {"X-Api-Token", apiSecret}, {"Proxy-Authorization", "Basic " + apiSecret}}
	if status, answer := f.uploadPack(t, token, spoof, v0Fetch("no-progress", []string{f.merge}, "done\n")); status != 200 || len(packObjects(t, packOf(t, answer))) == 0 {
		t.Fatalf("v0 fetch with the API token = %d %q", status, answer)
	}
	if status, answer := f.uploadPack(t, scoped, append(spoof, [2]string{"Git-Protocol", "version=2"}), v2Fetch("want "+f.merge+"\n", "done\n")); status != 200 || len(packObjects(t, packOf(t, answer))) == 0 {
		t.Fatalf("v2 fetch with the fetch token = %d %q", status, answer)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
	req.Header = http.Header{"Authorization": {"Bearer " + scoped}, "Git_Protocol": {"version=2"}, "Cookie": {"session=" + apiSecret}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	advert, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || bytes.Contains(advert, []byte(secret)) || !bytes.Contains(advert, []byte("refs/pipelines/7")) {
		t.Fatalf("scoped advertisement = %d %q", resp.StatusCode, advert)
	}

	allowed := map[string]bool{}
	for _, k := range strings.Fields(`SERVER_PROTOCOL GATEWAY_INTERFACE REQUEST_METHOD QUERY_STRING PATH_INFO
		REMOTE_ADDR CONTENT_LENGTH CONTENT_TYPE HTTP_GIT_PROTOCOL
		GIT_PROJECT_ROOT GIT_HTTP_EXPORT_ALL GIT_HTTP_MAX_REQUEST_BUFFER
		PATH HOME GIT_CONFIG_NOSYSTEM GIT_CONFIG_GLOBAL GIT_TERMINAL_PROMPT LC_ALL`) {
		allowed[k] = true
	}
	files, _ := filepath.Glob(filepath.Join(dumps, "env.*"))
	if len(files) != 3 {
		t.Fatalf("%d environments written down, want 3", len(files))
	}
	scopedRuns := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for line := range strings.Lines(string(raw)) {
			k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
			env[k] = v
			if !allowed[k] {
				t.Errorf("%s reached git http-backend", k)
			}
			for _, s := range []string{token, scoped, apiSecret, keySecret} {
				if strings.Contains(v, s) {
					t.Errorf("%s carries a secret", k)
				}
			}
		}
		if q := env["QUERY_STRING"]; q != "" && q != "service=git-upload-pack" {
			t.Errorf("QUERY_STRING=%q", q)
		}
		if v, ok := env["HTTP_GIT_PROTOCOL"]; ok && v != "version=2" {
			t.Errorf("HTTP_GIT_PROTOCOL=%q", v)
		}
		if env["GIT_CONFIG_GLOBAL"] != "/dev/null" || env["GIT_CONFIG_NOSYSTEM"] != "1" || env["HOME"] != "/dev/null" {
			t.Errorf("git configuration not pinned down: %q", raw)
		}
		argv, err := os.ReadFile(strings.Replace(file, "env.", "argv.", 1))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Fields(string(argv))
		if len(args) < 3 || args[0] != "-c" || args[1] != "core.hooksPath=/dev/null" || args[len(args)-1] != "http-backend" {
			t.Errorf("git http-backend started without hooks off: %q", argv)
		}
		if scopedRun := strings.Contains(string(argv), "uploadpack.hideRefs=!refs/pipelines/7"); scopedRun {
			scopedRuns++
		}
	}
	if scopedRuns != 2 {
		t.Errorf("%d runs of http-backend held to the fetch token's pin, want 2", scopedRuns)
	}
}

// TestScopedFetchWithHistory: a runner that keeps a clone between jobs
// fetches new pins with their fetch tokens over v2. Its haves in the
// pinned commit's history are passed on (the server acknowledges them and
// sends only what is new); for a pin of unrelated history every have is
// dropped, round after round (gzipped by git once they grow), and the
// fetch still ends with the commit.
func TestScopedFetchWithHistory(t *testing.T) {
	f := newFixture(t)
	for i := range 60 {
		f.git.Commit(t, "main", map[string]string{"n.txt": strings.Repeat("x", i)}, "filler")
	}
	work := t.TempDir()
	url := f.srv.URL + "/git/group/app.git"
	if out, err := gitCLI(t, work, "-c", "http.extraHeader=Authorization: Bearer "+token, "clone", "-q", "--bare", url, "."); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	related := f.git.Commit(t, "main", map[string]string{"late.txt": "late\n"}, "late")
	unrelated := f.git.Commit(t, "orphan", map[string]string{"other.txt": "other\n"}, "a root of its own")
	trace := []string{"GIT_TRACE_PACKET=1", "GIT_TRACE_CURL=1", "GIT_TRACE_CURL_NO_DATA=1"}
	for i, c := range []struct {
		sha, what string
		acked     bool
	}{
		{related, "+refs/pipelines/10:refs/pipelines/10", true},
		{unrelated, unrelated, false},
	} {
		pin := f.do(t, "PUT", p+"/pipelines/"+strconv.Itoa(10+i)+"/ref", `{"sha":"`+c.sha+`"}`)
		if pin.status != 201 {
			t.Fatalf("pin = %d %s", pin.status, pin.raw)
		}
		scoped, _ := pin.body["fetch_token"].(string)
		out, err := gitCLIEnv(t, work, trace, "-c", "http.extraHeader=Authorization: Bearer "+scoped, "-c", "protocol.version=2",
			"fetch", "--no-tags", url, c.what)
		if err != nil {
			t.Fatalf("scoped fetch of %s with history: %v\n%s", c.what, err, out)
		}
		if got, _ := gitCLI(t, work, "cat-file", "-t", c.sha); strings.TrimSpace(got) != "commit" {
			t.Fatalf("fetch of %s did not bring %s", c.what, c.sha)
		}
		if acked := strings.Contains(out, "fetch< ACK "); acked != c.acked {
			t.Fatalf("fetch of %s: server acknowledged a have: %v, want %v", c.what, acked, c.acked)
		}
		if !c.acked && !strings.Contains(out, "Content-Encoding: gzip") {
			t.Fatalf("the negotiation was never gzipped; the test proves less than it says")
		}
	}
}

// TestScopedAdvertisement: a v0 advertisement for a fetch token lists the
// pinned ref alone and does not name HEAD's target either, whatever
// protocol header spelling is sent.
func TestScopedAdvertisement(t *testing.T) {
	f := newScopedFixture(t)
	get := func(bearer string, headers [][2]string) (int, string) {
		req, _ := http.NewRequest("GET", f.srv.URL+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
		req.Header = http.Header{"Authorization": {"Bearer " + bearer}}
		for _, h := range headers {
			req.Header[h[0]] = append(req.Header[h[0]], h[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	if _, full := get(token, nil); !strings.Contains(full, "symref=HEAD:refs/heads/main") {
		t.Fatalf("the API token's advertisement has no symref: the test proves nothing: %q", full)
	}
	for _, h := range headerSpellings {
		status, advert := get(f.scoped, h.headers)
		if status != 200 || strings.Contains(advert, "refs/heads/") || strings.Contains(advert, f.secret) || strings.Contains(advert, "refs/pipelines/8") {
			t.Errorf("%s: %d %q", h.name, status, advert)
		}
		if v2 := strings.Contains(advert, "version 2"); !v2 && !strings.Contains(advert, f.merge+" refs/pipelines/7\x00") {
			t.Errorf("%s: v0 advertisement without the pinned ref: %q", h.name, advert)
		}
	}
}
