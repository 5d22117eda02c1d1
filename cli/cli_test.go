package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/refkeeper/refkeeper/client"
)

// cliRun runs one refkeeper command in this process with env as its whole
// environment, as either main would.
func cliRun(tb testing.TB, env map[string]string, stderr *hookWriter, args ...string) (code int, stdout, errOut string) {
	tb.Helper()
	var out bytes.Buffer
	if stderr == nil {
		stderr = &hookWriter{}
	}
	code = Run(tb.Context(), args[0], args[1:], func(k string) string { return env[k] }, &out, stderr)
	return code, out.String(), stderr.String()
}

// hookWriter collects output and calls fire once, synchronously, when the
// output first contains match: the command is then paused in that Write,
// so what fire changes is in place before the command goes on.
type hookWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	match string
	fire  func()
	fired bool
}

func (w *hookWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.fire != nil && !w.fired && strings.Contains(w.buf.String(), w.match) {
		w.fired = true
		w.fire()
	}
	return len(p), nil
}

func (w *hookWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func decodePin(tb testing.TB, out string) client.Pin {
	tb.Helper()
	var p client.Pin
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		tb.Fatalf("not a pin: %v\n%s", err, out)
	}
	return p
}

// TestCLI drives every API command against a real server: table and JSON
// output, exit statuses, the token's sources.
func TestCLI(t *testing.T) {
	s := startPinnedServer(t, "")
	p, srv := s.p, s.srv
	env := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}

	code, out, errOut := cliRun(t, env, nil, "pin", "group/app", "7", "--sha", p.First, "--json")
	pin := decodePin(t, out)
	if code != 0 || pin.SHA != p.First || pin.State != client.StatePinned || pin.FetchToken == nil || *pin.FetchToken == "" {
		t.Fatalf("pin --json = %d %+v\n%s", code, pin, errOut)
	}
	if sha, ok := p.RefSHA(t, "refs/pipelines/7"); !ok || sha != p.First {
		t.Fatalf("refs/pipelines/7 = %s %v", sha, ok)
	}
	code, out, _ = cliRun(t, env, nil, "pin", "--sha", p.First, "group/app", "7")
	if code != 0 || !strings.Contains(out, "existed (200)") || !strings.Contains(out, p.First) || strings.Contains(out, *pin.FetchToken) {
		t.Fatalf("pin table = %d\n%s", code, out)
	}
	code, _, errOut = cliRun(t, env, nil, "pin", "group/app", "7", "--sha", p.Second)
	if code != 1 || !strings.Contains(errOut, "ref_conflict") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("conflicting pin = %d %q", code, errOut)
	}
	code, out, _ = cliRun(t, env, nil, "pin", "group/app", "8", "--merge-request", "12", "--json")
	if byMR := decodePin(t, out); code != 0 || byMR.SHA != p.Merge || *byMR.MergeRequestIID != 12 {
		t.Fatalf("pin by merge request = %d %+v", code, byMR)
	}
	code, out, _ = cliRun(t, env, nil, "get", "group/app", "8", "--json")
	if got := decodePin(t, out); code != 0 || got.SHA != p.Merge {
		t.Fatalf("get = %d %+v", code, got)
	}
	code, out, _ = cliRun(t, env, nil, "finish", "group/app", "7", "--status", "success")
	if code != 0 || !strings.Contains(out, "finished") {
		t.Fatalf("finish = %d\n%s", code, out)
	}
	code, out, _ = cliRun(t, env, nil, "list", "group/app")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "PIPELINE") {
		t.Fatalf("list = %d\n%s", code, out)
	}
	code, out, errOut = cliRun(t, env, nil, "list", "group/app", "--limit", "1", "--json")
	var page client.PinPage
	if err := json.Unmarshal([]byte(out), &page); err != nil || code != 0 || len(page.Pins) != 1 || page.NextCursor == nil {
		t.Fatalf("list --limit 1 = %d %+v %v %s", code, page, err, errOut)
	}
	code, out, _ = cliRun(t, env, nil, "list", "group/app", "--limit", "1", "--all", "--json")
	page = client.PinPage{}
	if err := json.Unmarshal([]byte(out), &page); err != nil || code != 0 || len(page.Pins) != 2 || page.NextCursor != nil {
		t.Fatalf("list --all = %d %+v %v", code, page, err)
	}
	code, out, _ = cliRun(t, env, nil, "list", "group/app", "--state", "finished", "--json")
	page = client.PinPage{}
	if err := json.Unmarshal([]byte(out), &page); err != nil || code != 0 || len(page.Pins) != 1 || page.Pins[0].PipelineID != 7 {
		t.Fatalf("list --state finished = %d %+v %v", code, page, err)
	}
	code, out, _ = cliRun(t, env, nil, "close", "group/app", "12", "--json")
	if code != 0 || !strings.Contains(out, `"pipeline_id": 8`) {
		t.Fatalf("close = %d\n%s", code, out)
	}
	code, out, _ = cliRun(t, env, nil, "gc")
	if code != 0 || !strings.Contains(out, "kept") {
		t.Fatalf("gc = %d\n%s", code, out)
	}
	code, out, _ = cliRun(t, env, nil, "delete", "group/app", "7")
	if _, there := p.RefSHA(t, "refs/pipelines/7"); code != 0 || !strings.Contains(out, "deleted refs/pipelines/7") || there {
		t.Fatalf("delete = %d\n%s", code, out)
	}
	code, out, errOut = cliRun(t, env, nil, "get", "group/app", "7")
	if code != ExitGone || !strings.Contains(out, "deleted") || !strings.Contains(errOut, "is deleted") {
		t.Fatalf("get of a deleted pin = %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"get", "group/app", "99"}, {"finish", "group/app", "99"}, {"delete", "group/app", "99"}} {
		if code, _, errOut := cliRun(t, env, nil, args...); code != ExitGone || !strings.Contains(errOut, "pin_not_found") {
			t.Errorf("%v = %d %s", args, code, errOut)
		}
	}

	// A merge the service computes: squash, then a conflict.
	code, out, errOut = cliRun(t, env, nil, "pin", "group/app", "30", "--merge-request", "12",
		"--merge-source", "feature", "--merge-target", "main", "--squash")
	if code != 0 || !strings.Contains(out, "squash of ") || !strings.Contains(out, " into "+p.Second) {
		t.Fatalf("pin --merge-target --squash = %d\n%s%s", code, out, errOut)
	}
	p.Commit(t, "main", map[string]string{"feature.txt": "conflicting\n"}, "conflicting")
	code, _, errOut = cliRun(t, env, nil, "pin", "group/app", "31", "--merge-source", "feature", "--merge-target", "main")
	if code != 1 || !strings.Contains(errOut, "merge_conflict") || !strings.Contains(errOut, "(conflicts: feature.txt)") {
		t.Fatalf("pin of a conflicting merge = %d %s", code, errOut)
	}
	if code, _, _ := cliRun(t, env, nil, "pin", "group/app", "31", "--merge-source", "feature"); code != ExitUsage {
		t.Fatalf("--merge-source without --merge-target = %d", code)
	}

	// The token: from a file, never from argv.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noToken := map[string]string{"REFKEEPER_URL": srv.Base}
	if code, _, errOut := cliRun(t, noToken, nil, "get", "group/app", "8", "--token-file", file); code != 0 {
		t.Fatalf("--token-file = %d %s", code, errOut)
	}
	if code, _, errOut := cliRun(t, noToken, nil, "get", "group/app", "8"); code != ExitUsage || !strings.Contains(errOut, "REFKEEPER_TOKEN") {
		t.Fatalf("no token = %d %s", code, errOut)
	}
	if code, _, _ := cliRun(t, noToken, nil, "get", "group/app", "8", "--token", testToken); code != ExitUsage {
		t.Fatalf("--token on the command line = %d, want usage", code)
	}
	wrong := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": "wrong-token-0123456789abcdef"}
	if code, _, errOut := cliRun(t, wrong, nil, "get", "group/app", "8"); code != ExitError || !strings.Contains(errOut, "unauthorized") {
		t.Fatalf("wrong token = %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"pin", "group/app", "x", "--sha", p.First},
		{"pin", "group/app", "07", "--sha", p.First},
		{"pin", "group/app", "9"},
		{"pin", "group/app", "9", "--sha", p.First, "--merge-target", "main"},
		{"get", "group/app"},
		{"projects", "frobnicate"},
	} {
		if code, _, _ := cliRun(t, env, nil, args...); code != ExitUsage {
			t.Errorf("%v = %d, want %d", args, code, ExitUsage)
		}
	}
}
