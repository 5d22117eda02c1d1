package cli

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// TestCLIProjects runs `refkeeper projects list|get|mirror|delete` against
// the server with a local project and a mirror of a real upstream, in table
// and --json output.
func TestCLIProjects(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root) // the local project group/app
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := u.CredentialsFile(t, "gh")
	srv := startServer(t, "--repos", root, "--redis", r.URL(), "--credentials", creds, "--upstream-allow", testdata.LoopbackUpstreams, "--upstream-timeout", "30s")
	env := map[string]string{"REFKEEPER_URL": srv.Base, "REFKEEPER_TOKEN": testToken}
	decodeProject := func(out string) client.Project {
		t.Helper()
		var pj client.Project
		if err := json.Unmarshal([]byte(out), &pj); err != nil {
			t.Fatalf("not a project: %v\n%s", err, out)
		}
		return pj
	}

	code, out, errOut := cliRun(t, env, nil, "projects", "mirror", "mirrors/gh", "--upstream", u.URL(), "--host", "github", "--credential", "gh")
	if code != 0 || !regexp.MustCompile(`(?m)^state\s+cloning$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^upstream\s+`+regexp.QuoteMeta(u.URL())+`$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^credential\s+gh$`).MatchString(out) {
		t.Fatalf("projects mirror = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cliRun(t, env, nil, "projects", "mirror", "mirrors/other"); code != 2 || !strings.Contains(errOut, "--upstream is required") {
		t.Errorf("projects mirror without --upstream = %d %q", code, errOut)
	}
	testdata.WaitFor(t, "the clone", 60*time.Second, func() bool {
		code, out, errOut := cliRun(t, env, nil, "projects", "get", "mirrors/gh", "--json")
		if code != 0 {
			t.Fatalf("projects get --json = %d\n%s", code, errOut)
		}
		return decodeProject(out).State != client.ProjectCloning
	})
	code, out, _ = cliRun(t, env, nil, "projects", "mirror", "mirrors/gh", "--upstream", u.URL(), "--host", "github", "--credential", "gh", "--json")
	if pj := decodeProject(out); code != 0 || pj.State != client.ProjectReady || pj.FetchedAt == nil || pj.Kind != client.KindMirror {
		t.Fatalf("repeat projects mirror --json = %d %+v", code, pj)
	}
	code, out, _ = cliRun(t, env, nil, "projects", "get", "mirrors/gh")
	if code != 0 || !regexp.MustCompile(`(?m)^state\s+ready$`).MatchString(out) || regexp.MustCompile(`(?m)^fetched\s+-$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^last error\s+-$`).MatchString(out) || strings.Contains(out, testdata.UpstreamPassword) {
		t.Fatalf("projects get = %d\n%s", code, out)
	}
	if code, _, errOut := cliRun(t, env, nil, "projects", "get", "group/none"); code != 1 || !strings.Contains(errOut, "project_not_found") {
		t.Errorf("projects get of no project = %d %q", code, errOut)
	}

	code, out, errOut = cliRun(t, env, nil, "projects")
	if code != 0 || !strings.HasPrefix(out, "PROJECT") ||
		!regexp.MustCompile(`(?m)^group/app\s+local\s+ready\s+-\s+-\s+-$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^mirrors/gh\s+mirror\s+ready\s+github\s+`+regexp.QuoteMeta(u.URL())+`\s+\S+$`).MatchString(out) ||
		strings.Contains(errOut, "more:") {
		t.Fatalf("projects = %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cliRun(t, env, nil, "projects", "list", "--limit", "1")
	if code != 0 || !strings.Contains(out, "group/app") || strings.Contains(out, "mirrors/gh") || !strings.Contains(errOut, "more: --cursor group/app") {
		t.Fatalf("projects list --limit 1 = %d\n%s%s", code, out, errOut)
	}
	var page client.ProjectPage
	code, out, _ = cliRun(t, env, nil, "projects", "list", "--limit", "1", "--cursor", "group/app", "--json")
	if err := json.Unmarshal([]byte(out), &page); err != nil || code != 0 || len(page.Projects) != 1 ||
		page.Projects[0].Project != "mirrors/gh" || page.NextCursor != nil || !strings.Contains(out, `"next_cursor": null`) {
		t.Fatalf("projects list --cursor --json = %d %v\n%s", code, err, out)
	}
	page = client.ProjectPage{}
	code, out, _ = cliRun(t, env, nil, "projects", "list", "--limit", "1", "--all", "--json")
	if err := json.Unmarshal([]byte(out), &page); err != nil || code != 0 || len(page.Projects) != 2 ||
		page.Projects[0].Project != "group/app" || page.Projects[0].Upstream != nil || page.Projects[1].Project != "mirrors/gh" {
		t.Fatalf("projects list --all --json = %d %v\n%s", code, err, out)
	}

	if code, _, errOut := cliRun(t, env, nil, "projects", "delete", "group/app"); code != 1 || !strings.Contains(errOut, "project_conflict") {
		t.Errorf("projects delete of the local project = %d %q", code, errOut)
	}
	if code, out, errOut := cliRun(t, env, nil, "projects", "delete", "mirrors/gh"); code != 0 || out != "deleted mirror mirrors/gh\n" {
		t.Fatalf("projects delete = %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cliRun(t, env, nil, "projects", "get", "mirrors/gh"); code != 1 || !strings.Contains(errOut, "project_not_found") {
		t.Errorf("projects get after delete = %d %q", code, errOut)
	}
	if code, _, errOut := cliRun(t, env, nil, "projects", "mirror", "mirrors/gh", "--upstream", u.URL(), "--credential", "gh"); code != 0 {
		t.Fatalf("projects mirror again = %d %q", code, errOut)
	}
	code, out, _ = cliRun(t, env, nil, "projects", "delete", "mirrors/gh", "--json")
	var deleted map[string]any
	if err := json.Unmarshal([]byte(out), &deleted); err != nil || code != 0 || deleted["project"] != "mirrors/gh" || deleted["deleted"] != true {
		t.Fatalf("projects delete --json = %d %v\n%s", code, err, out)
	}
	if code, _, _ := cliRun(t, env, nil, "projects", "get", "group/app"); code != 0 {
		t.Errorf("the local project is gone after a refused delete")
	}
}
