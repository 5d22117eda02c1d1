package access_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/access"
	"github.com/refkeeper/refkeeper/refs"
)

func digest(tok string) string {
	d := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(d[:])
}

const example = `{
  "tokens": [
    {"name": "orchestrator", "sha256": "DIGEST_P", "role": "pipeline", "projects": ["group/*"]},
    {"name": "dashboard", "sha256": "DIGEST_R", "role": "read", "projects": ["group/app", "lib"]},
    {"name": "ops", "sha256": "DIGEST_A", "role": "admin"}
  ],
  "identities": [
    {"issuer": "https://gitlab.example.com", "audience": "refkeeper", "kind": "gitlab", "projects": ["group/*"]},
    {"issuer": "http://127.0.0.1:8443", "audience": "refkeeper", "kind": "github", "projects": ["*"]}
  ],
  "hooks": [
    {"host": "gitlab", "secret": "secret-app", "projects": ["group/app"]},
    {"host": "gitlab", "secret": "secret-group", "projects": ["group/*"]},
    {"host": "github", "secret": "secret-all"}
  ]
}`

func exampleFile() []byte {
	return []byte(strings.NewReplacer("DIGEST_P", digest("tok-p"), "DIGEST_R", strings.ToUpper(digest("tok-r")), "DIGEST_A", digest("tok-a")).Replace(example))
}

func TestParseExample(t *testing.T) {
	pol, err := access.Parse("access.json", exampleFile())
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		tok  string
		ok   bool
		role access.Role
		name string
	}
	for _, w := range []want{
		{"tok-p", true, access.Pipeline, "orchestrator"},
		{"tok-r", true, access.Read, "dashboard"},
		{"tok-a", true, access.Admin, "ops"},
		{"tok-x", false, "", ""},
		{"", false, "", ""},
		{digest("tok-p"), false, "", ""}, // the digest itself is no token
	} {
		g, ok := pol.Token(w.tok)
		if ok != w.ok || g.Role != w.role || g.Name != w.name {
			t.Errorf("Token(%q) = %+v %v, want %s %s %v", w.tok, g, ok, w.name, w.role, w.ok)
		}
	}
	if got := pol.HookSecrets("gitlab", "group/app"); strings.Join(got, ",") != "secret-app,secret-group" {
		t.Errorf("gitlab secrets of group/app = %v", got)
	}
	if got := pol.HookSecrets("gitlab", "group/lib"); strings.Join(got, ",") != "secret-group" {
		t.Errorf("gitlab secrets of group/lib = %v", got)
	}
	if got := pol.HookSecrets("gitlab", "other/app"); len(got) != 0 {
		t.Errorf("gitlab secrets of other/app = %v", got)
	}
	if got := pol.HookSecrets("github", "any/thing"); strings.Join(got, ",") != "secret-all" {
		t.Errorf("github secrets (projects left out: every project) = %v", got)
	}
	if got := pol.HookSecrets("github", ""); strings.Join(got, ",") != "secret-all" {
		t.Errorf("github secrets for a delivery naming no project = %v", got)
	}
	if got := pol.HookSecrets("gitlab", ""); len(got) != 0 {
		t.Errorf("gitlab secrets for a delivery naming no project = %v, want none (all are per project)", got)
	}
	if !pol.CoversHost("gitlab") || !pol.CoversHost("github") || pol.CoversHost("gitea") {
		t.Error("CoversHost is wrong")
	}
	if ids := pol.Identities(); len(ids) != 2 || ids[0].Kind != "gitlab" || ids[1].Issuer != "http://127.0.0.1:8443" {
		t.Errorf("identities = %+v", ids)
	}
}

func TestParseRefuses(t *testing.T) {
	d := digest("t")
	tok := func(fields string) string { return `{"tokens": [{` + fields + `}]}` }
	id := func(fields string) string { return `{"identities": [{` + fields + `}]}` }
	cases := []struct{ name, body, says string }{
		{"unknown top-level field", `{"users": []}`, `unknown field "users"`},
		{"unknown token field", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["*"], "token": "x"`), `unknown field "token"`},
		{"two values", `{} {}`, "more than one JSON value"},
		// encoding/json alone reads "Role" as "role" and keeps the last of
		// two: a read entry that a reader sees as read would be admin.
		{"case-variant key", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["group/app"], "Role": "admin"`), `key "Role" is not a field here`},
		{"case-variant projects", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["group/app"], "PROJECTS": ["*"]`), `key "PROJECTS" is not a field here`},
		{"key twice", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "role": "admin", "projects": ["*"]`), `key "role" appears twice`},
		{"top-level case variant", `{"Tokens": []}`, `key "Tokens" is not a field here`},
		{"not JSON", `{"tokens": [`, "not valid JSON"},
		{"wrong type", `{"tokens": {}}`, "wrong type"},
		{"no name", tok(`"sha256": "` + d + `", "role": "read", "projects": ["*"]`), "needs a name"},
		{"short sha256", tok(`"name": "a", "sha256": "abcd", "role": "read", "projects": ["*"]`), "64 hex digits"},
		{"sha256 not hex", tok(`"name": "a", "sha256": "` + strings.Repeat("z", 64) + `", "role": "read", "projects": ["*"]`), "64 hex digits"},
		{"bad role", tok(`"name": "a", "sha256": "` + d + `", "role": "owner", "projects": ["*"]`), "role must be"},
		{"no projects", tok(`"name": "a", "sha256": "` + d + `", "role": "pipeline"`), "needs projects"},
		{"empty projects", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": []`), "needs projects"},
		{"admin with projects", tok(`"name": "a", "sha256": "` + d + `", "role": "admin", "projects": ["*"]`), "leave projects out"},
		{"bad pattern", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["group/**"]`), "not a project pattern"},
		{"dot pattern", tok(`"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["../*"]`), "not a project pattern"},
		{"same name twice", `{"tokens": [{"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["*"]}, {"name": "a", "sha256": "` + digest("u") + `", "role": "read", "projects": ["*"]}]}`, "used twice"},
		{"same digest twice", `{"tokens": [{"name": "a", "sha256": "` + d + `", "role": "read", "projects": ["*"]}, {"name": "b", "sha256": "` + d + `", "role": "read", "projects": ["*"]}]}`, "listed twice"},
		{"http issuer", id(`"issuer": "http://gitlab.example.com", "audience": "r", "kind": "gitlab", "projects": ["*"]`), "http only on a loopback"},
		{"issuer not a URL", id(`"issuer": "gitlab.example.com", "audience": "r", "kind": "gitlab", "projects": ["*"]`), "https URL"},
		{"issuer with a user", id(`"issuer": "https://u:p@gitlab.example.com", "audience": "r", "kind": "gitlab", "projects": ["*"]`), "https URL"},
		{"no audience", id(`"issuer": "https://gitlab.example.com", "kind": "gitlab", "projects": ["*"]`), "audience is required"},
		{"bad kind", id(`"issuer": "https://gitlab.example.com", "audience": "r", "kind": "jenkins", "projects": ["*"]`), "kind must be"},
		{"identity without projects", id(`"issuer": "https://gitlab.example.com", "audience": "r", "kind": "github"`), "projects is required"},
		{"bad hook host", `{"hooks": [{"host": "bitbucket", "secret": "s"}]}`, "host must be"},
		{"empty secret", `{"hooks": [{"host": "gitlab", "secret": ""}]}`, "secret is required"},
		{"hook empty projects", `{"hooks": [{"host": "gitlab", "secret": "s", "projects": []}]}`, "projects is empty"},
		{"hook bad pattern", `{"hooks": [{"host": "gitlab", "secret": "s", "projects": ["/x"]}]}`, "not a project pattern"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol, err := access.Parse("f.json", []byte(c.body))
			var fe *access.FileError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "f.json") {
				t.Fatalf("Parse = %v, %v; want a FileError saying %q", pol, err, c.says)
			}
		})
	}
	// A secret never shows in an error.
	_, err := access.Parse("f.json", []byte(`{"hooks": [{"host": "nope", "secret": "hidden-secret"}]}`))
	if err == nil || strings.Contains(err.Error(), "hidden-secret") {
		t.Fatalf("error %v", err)
	}
}

func TestGrantMay(t *testing.T) {
	group := []refs.ProjectPattern{"group/*"}
	cases := []struct {
		g    access.Grant
		a    access.Action
		p    refs.Project
		want bool
	}{
		{access.AdminGrant, access.Administer, "", true},
		{access.AdminGrant, access.WritePins, "any/thing", true},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.WritePins, "group/app", true},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.ReadPins, "group/sub/app", true},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.Fetch, "group/app", true},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.WritePins, "other/app", false},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.WritePins, "group", false},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.WritePins, "groupie/app", false},
		{access.Grant{Role: access.Pipeline, Projects: group}, access.Administer, "group/app", false},
		{access.Grant{Role: access.Read, Projects: group}, access.ReadPins, "group/app", true},
		{access.Grant{Role: access.Read, Projects: group}, access.Fetch, "group/app", true},
		{access.Grant{Role: access.Read, Projects: group}, access.WritePins, "group/app", false},
		{access.Grant{Role: access.Read, Projects: group}, access.Fetch, "other/app", false},
		{access.Grant{}, access.ReadPins, "group/app", false},
	}
	for _, c := range cases {
		if got := c.g.May(c.a, c.p); got != c.want {
			t.Errorf("%+v May(%v, %q) = %v, want %v", c.g, c.a, c.p, got, c.want)
		}
	}
	if (access.Grant{Role: access.Pipeline, Projects: []refs.ProjectPattern{"*"}}).MayAdminister() {
		t.Error("a pipeline token of every project may administer")
	}
}

// write replaces the file as an atomic writer does, with a modification
// time of its own.
func write(t *testing.T, path, body string, at time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, at, at); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	start := time.Now().Add(-time.Hour)
	one := `{"tokens": [{"name": "one", "sha256": "` + digest("tok-1") + `", "role": "read", "projects": ["*"]}]}`
	two := `{"tokens": [{"name": "two", "sha256": "` + digest("tok-2") + `", "role": "pipeline", "projects": ["group/*"]}]}`
	write(t, path, one, start)
	var logs bytes.Buffer
	f := &access.File{Path: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if g, ok := f.Token("tok-1"); !ok || g.Name != "one" {
		t.Fatalf("tok-1 = %+v %v", g, ok)
	}
	write(t, path, two, start.Add(time.Minute))
	if _, ok := f.Token("tok-1"); ok {
		t.Error("tok-1 still valid after the file dropped it")
	}
	if g, ok := f.Token("tok-2"); !ok || g.Role != access.Pipeline {
		t.Errorf("tok-2 after the re-read = %+v %v", g, ok)
	}
	// A bad edit: the last good version stays, logged once.
	write(t, path, `{"tokens": [{"name": "x", "role": "god"}]}`, start.Add(2*time.Minute))
	for range 3 {
		if g, ok := f.Token("tok-2"); !ok || g.Name != "two" {
			t.Fatalf("after a bad edit tok-2 = %+v %v, want the last good file", g, ok)
		}
	}
	if n := strings.Count(logs.String(), "access file not reloaded"); n != 1 {
		t.Errorf("%d log lines for one bad edit, want 1:\n%s", n, logs.String())
	}
	// Gone: still the last good version.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Token("tok-2"); !ok {
		t.Error("a removed file dropped the last good version")
	}
	if n := strings.Count(logs.String(), "access file not reloaded"); n != 2 {
		t.Errorf("%d log lines after the file went away, want 2:\n%s", n, logs.String())
	}
	write(t, path, one, start.Add(3*time.Minute))
	if _, ok := f.Token("tok-1"); !ok {
		t.Error("the fixed file was not read")
	}
	// At start a bad file is an error.
	write(t, path, `{"tokens": 1}`, start.Add(4*time.Minute))
	if err := (&access.File{Path: path}).Load(); err == nil {
		t.Error("Load of a bad file = nil")
	}
	if err := (&access.File{Path: filepath.Join(t.TempDir(), "none.json")}).Load(); err == nil || !strings.Contains(err.Error(), "none.json") {
		t.Errorf("Load of a missing file = %v", err)
	}
	// No file: an empty policy.
	var none *access.File
	if _, ok := none.Token("tok-1"); ok || none.CoversHost("gitlab") {
		t.Error("a nil File grants something")
	}
}
