package systest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/refkeeper/refkeeper/testdata"
)

// The CI files users include: GitLab's component and the composite action
// of GitHub, Gitea and Forgejo Actions.
var (
	gitlabComponent = filepath.Join("..", "ci", "gitlab", "templates", "checkout.yml")
	githubAction    = filepath.Join("..", "ci", "github", "action.yml")
)

// gitlabJob is the job part of the GitLab component as a runner gets it
// once GitLab has interpolated the inputs.
type gitlabJob struct {
	name      string
	variables map[string]string
	// idTokens maps each id_tokens variable to its audience.
	idTokens map[string]string
	// script is before_script then script, the lines the runner's shell
	// runs in the job's build directory.
	script []string
	// hooks holds hooks.pre_get_sources_script: runners skip it under
	// GIT_STRATEGY none, so the checkout must not be there.
	hooks []string
}

var gitlabInput = regexp.MustCompile(`\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]`)

// loadGitLabComponent reads templates/checkout.yml as GitLab does: the spec
// document, then the jobs with every $[[ inputs.x ]] replaced by the given
// input or the spec's default (an input without either fails the test).
func loadGitLabComponent(tb testing.TB, inputs map[string]string) gitlabJob {
	tb.Helper()
	raw, err := os.ReadFile(gitlabComponent)
	if err != nil {
		tb.Fatal(err)
	}
	docs := bytes.SplitN(raw, []byte("\n---\n"), 2)
	if len(docs) != 2 {
		tb.Fatalf("%s: no spec header followed by ---", gitlabComponent)
	}
	var head struct {
		Spec struct {
			Inputs map[string]struct {
				Default     *string `yaml:"default"`
				Description string  `yaml:"description"`
			} `yaml:"inputs"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(docs[0], &head); err != nil {
		tb.Fatalf("%s spec: %v", gitlabComponent, err)
	}
	for name := range inputs {
		if _, ok := head.Spec.Inputs[name]; !ok {
			tb.Fatalf("%s has no input %q", gitlabComponent, name)
		}
	}
	var missing []string
	body := gitlabInput.ReplaceAllStringFunc(string(docs[1]), func(m string) string {
		name := gitlabInput.FindStringSubmatch(m)[1]
		if v, ok := inputs[name]; ok {
			return v
		}
		in, ok := head.Spec.Inputs[name]
		if !ok || in.Default == nil {
			missing = append(missing, name)
			return ""
		}
		return *in.Default
	})
	if len(missing) > 0 {
		tb.Fatalf("%s: inputs %v have neither a value nor a default", gitlabComponent, missing)
	}
	var jobs map[string]struct {
		Variables map[string]string `yaml:"variables"`
		IDTokens  map[string]struct {
			Aud string `yaml:"aud"`
		} `yaml:"id_tokens"`
		BeforeScript []string `yaml:"before_script"`
		Script       []string `yaml:"script"`
		Hooks        struct {
			PreGetSources []string `yaml:"pre_get_sources_script"`
		} `yaml:"hooks"`
	}
	if err := yaml.Unmarshal([]byte(body), &jobs); err != nil {
		tb.Fatalf("%s jobs: %v\n%s", gitlabComponent, err, body)
	}
	if len(jobs) != 1 {
		tb.Fatalf("%s defines %d jobs, want the one hidden job", gitlabComponent, len(jobs))
	}
	var job gitlabJob
	for name, j := range jobs {
		job = gitlabJob{name: name, variables: j.Variables, idTokens: map[string]string{},
			script: append(append([]string{}, j.BeforeScript...), j.Script...), hooks: j.Hooks.PreGetSources}
		for v, tok := range j.IDTokens {
			job.idTokens[v] = tok.Aud
		}
	}
	return job
}

// shellScript is what a GitLab runner's bash runs of a job's lines: each
// line in turn, stopping at the first that fails.
func (j gitlabJob) shellScript() string {
	return "set -eo pipefail\n" + strings.Join(j.script, "\n") + "\n"
}

// actionStep is one run step of the composite action, as the runner runs
// it once the expressions are evaluated.
type actionStep struct {
	shell, run string
	env        map[string]string
}

// actionExpr is a ${{ … }} of the action: the only forms it may use are
// inputs.x, github.a.b and alternatives joined by ||.
var actionExpr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// loadGitHubAction reads action.yml and evaluates its run steps as the
// Actions runner does, with inputs (given, else the declared defaults) and
// the github context (dotted paths: "run_id", "event.pull_request.head.sha").
func loadGitHubAction(tb testing.TB, inputs map[string]string, github map[string]string) []actionStep {
	tb.Helper()
	raw, err := os.ReadFile(githubAction)
	if err != nil {
		tb.Fatal(err)
	}
	var action struct {
		Inputs map[string]struct {
			Required bool    `yaml:"required"`
			Default  *string `yaml:"default"`
		} `yaml:"inputs"`
		Runs struct {
			Using string `yaml:"using"`
			Steps []struct {
				Shell string            `yaml:"shell"`
				Run   string            `yaml:"run"`
				Uses  string            `yaml:"uses"`
				Env   map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	if err := yaml.Unmarshal(raw, &action); err != nil {
		tb.Fatalf("%s: %v", githubAction, err)
	}
	if action.Runs.Using != "composite" {
		tb.Fatalf("%s runs using %q, want composite", githubAction, action.Runs.Using)
	}
	for name := range inputs {
		if _, ok := action.Inputs[name]; !ok {
			tb.Fatalf("%s has no input %q", githubAction, name)
		}
	}
	var eval func(s string) string
	lookup := func(ref string) string {
		switch {
		case strings.HasPrefix(ref, "inputs."):
			name := strings.TrimPrefix(ref, "inputs.")
			if v, ok := inputs[name]; ok {
				return v
			}
			in, ok := action.Inputs[name]
			if !ok {
				tb.Fatalf("%s: ${{ %s }} names no input", githubAction, ref)
			}
			if in.Required {
				tb.Fatalf("%s: required input %s not given", githubAction, name)
			}
			if in.Default == nil {
				return ""
			}
			return eval(*in.Default)
		case strings.HasPrefix(ref, "github."):
			return github[strings.TrimPrefix(ref, "github.")]
		}
		tb.Fatalf("%s: ${{ %s }} is not a form this test evaluates", githubAction, ref)
		return ""
	}
	eval = func(s string) string {
		return actionExpr.ReplaceAllStringFunc(s, func(m string) string {
			for _, alt := range strings.Split(actionExpr.FindStringSubmatch(m)[1], "||") {
				if v := lookup(strings.TrimSpace(alt)); v != "" {
					return v
				}
			}
			return ""
		})
	}
	var steps []actionStep
	for _, s := range action.Runs.Steps {
		if s.Uses != "" {
			tb.Fatalf("%s: step uses %s: the action must need nothing but git and refkeeper", githubAction, s.Uses)
		}
		if actionExpr.MatchString(s.Run) {
			tb.Fatalf("%s: a run script splices an expression into shell text: %q", githubAction, s.Run)
		}
		env := map[string]string{}
		for k, v := range s.Env {
			env[k] = eval(v)
		}
		steps = append(steps, actionStep{shell: s.Shell, run: s.Run, env: env})
	}
	return steps
}

// script is what the runner runs for a `shell: bash` step: bash
// --noprofile --norc -eo pipefail on the script.
func (s actionStep) script(tb testing.TB) string {
	tb.Helper()
	if s.shell != "bash" {
		tb.Fatalf("step shell %q, want bash (the same on GitHub's, Gitea's and Forgejo's runners)", s.shell)
	}
	return "set -eo pipefail\n" + s.run + "\n"
}

// ciJob runs a job part with bash as the runner would: in a fresh
// directory, with the refkeeper binary on PATH and env on top of this
// process's environment. It answers the output and the exit status.
func ciJob(tb testing.TB, script string, env map[string]string) (string, int) {
	tb.Helper()
	out, err := runShell(tb, tb.TempDir(), script, env)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exit):
		return out, exit.ExitCode()
	}
	tb.Fatalf("running the job: %v\n%s", err, out)
	return "", -1
}

// isEmpty says whether a checkout left dir as the runner made it: an
// empty directory.
func isEmpty(tb testing.TB, dir string) bool {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return len(entries) == 0
}

// runnerDir makes a job's build directory as runners do before the job's
// steps run (GitLab's under GIT_STRATEGY none, GitHub's workspace): empty.
func runnerDir(tb testing.TB, dir string) string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// dirtyCheckout checks that a job whose work tree has a change of someone
// else's fails with exit 1, names the change, and leaves it as it was.
func dirtyCheckout(tb testing.TB, dir, script string, env map[string]string) {
	tb.Helper()
	stray := filepath.Join(dir, "report.txt")
	if err := os.WriteFile(stray, []byte("left by the last job\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	before := testdata.HeadOf(tb, dir)
	out, code := ciJob(tb, script, env)
	if code != 1 || !strings.Contains(out, "has local changes") || !strings.Contains(out, "report.txt") {
		tb.Fatalf("job over a dirty work tree: exit %d, want 1 naming report.txt\n%s", code, out)
	}
	if b, err := os.ReadFile(stray); err != nil || string(b) != "left by the last job\n" || testdata.HeadOf(tb, dir) != before {
		tb.Fatalf("the dirty work tree was touched: %q %v, HEAD %s (was %s)", b, err, testdata.HeadOf(tb, dir), before)
	}
	tb.Logf("dirty work tree: exit %d\n%s", code, out)
}

// TestGitLabComponentJob runs the job part of ci/gitlab/templates/checkout.yml
// as a GitLab runner does, with GitLab's predefined variables and the job's
// ID token from a real issuer the test serves, against the built server:
// the pipeline hook pins, the job checks the pin out; a job whose commit is
// not the pin's fails with nothing fetched, and so does one whose work tree
// has changes.
func TestGitLabComponentJob(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	iss := startJobIssuer(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gitlab-hook-token", e2eGitLabToken,
		"--access", iss.accessFile(t, "gitlab", "group/*"))

	// The webhook pins pipeline 31 of merge request 1 at its sha.
	running := testdata.HookEdit(t, testdata.HookEdit(t,
		testdata.HookPayload(t, "gitlab-pipeline-success.json", map[string]string{"SHA": p.merge}),
		`"status": "success",`, `"status": "running",`), `"finished_at": "2016-08-12 15:26:29 UTC",`, `"finished_at": null,`)
	deliver := func(id string, body []byte) {
		t.Helper()
		code, answer := srv.deliver(t, "gitlab", body, map[string]string{"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": e2eGitLabToken, "Idempotency-Key": id})
		wantAction(t, "pipeline hook", code, answer, "pinned")
	}
	deliver("gl-1", running)

	job := loadGitLabComponent(t, map[string]string{"refkeeper_url": srv.Base})
	if job.variables["GIT_STRATEGY"] != "none" || len(job.hooks) != 0 {
		t.Fatalf("job %s: GIT_STRATEGY %q, pre_get_sources_script %v: the runner would fetch the merge ref itself, or skip the checkout",
			job.name, job.variables["GIT_STRATEGY"], job.hooks)
	}
	if len(job.idTokens) != 1 || job.idTokens["REFKEEPER_ID_TOKEN"] != "refkeeper" {
		t.Fatalf("job %s id_tokens %v, want REFKEEPER_ID_TOKEN with aud refkeeper", job.name, job.idTokens)
	}
	// The job's own script, after the component's before_script.
	job.script = append(job.script, `git log -1 --format="testing %H"`)

	// gitlabEnv is what a GitLab runner sets for a job of pipeline id at
	// commit sha: its predefined variables, the job's variables, and the ID
	// token GitLab signs for it.
	builds := t.TempDir()
	gitlabEnv := func(id int64, sha string) map[string]string {
		env := map[string]string{
			"CI": "true", "GITLAB_CI": "true", "CI_SERVER_URL": "https://gitlab.example.com",
			"CI_PROJECT_PATH": "group/app", "CI_PROJECT_DIR": runnerDir(t, filepath.Join(builds, "group", "app")),
			"CI_PIPELINE_ID": strconv.FormatInt(id, 10), "CI_COMMIT_SHA": sha,
			"CI_MERGE_REQUEST_IID": "1", "CI_PIPELINE_SOURCE": "merge_request_event",
		}
		for k, v := range job.variables {
			env[k] = v
		}
		for v, aud := range job.idTokens {
			env[v] = iss.gitlabToken(t, aud, "group/app", id)
		}
		return env
	}

	env := gitlabEnv(31, p.merge)
	out, code := ciJob(t, job.shellScript(), env)
	if code != 0 || !strings.Contains(out, "testing "+p.merge) || testdata.HeadOf(t, env["CI_PROJECT_DIR"]) != p.merge {
		t.Fatalf("job: exit %d\n%s", code, out)
	}
	t.Logf("job printed:\n%s", out)

	t.Run("a pin of another commit", func(t *testing.T) {
		// Pipeline 32's pin is p.merge; its jobs are at the feature branch.
		deliver("gl-2", testdata.HookEdit(t, running, `"id": 31,`, `"id": 32,`))
		builds = t.TempDir()
		env := gitlabEnv(32, p.c1)
		out, code := ciJob(t, job.shellScript(), env)
		if code != 1 || !strings.Contains(out, p.merge) || !strings.Contains(out, p.c1) || strings.Contains(out, "testing ") {
			t.Fatalf("job at another commit than its pin: exit %d, want 1 naming both\n%s", code, out)
		}
		if !isEmpty(t, env["CI_PROJECT_DIR"]) {
			t.Fatalf("something was checked out into %s", env["CI_PROJECT_DIR"])
		}
		t.Logf("pin of another commit: exit %d\n%s", code, out)
	})

	t.Run("a dirty work tree", func(t *testing.T) {
		dirtyCheckout(t, env["CI_PROJECT_DIR"], job.shellScript(), env)
	})
}

// TestGitHubActionJob runs the step of ci/github/action.yml as GitHub's
// runner does, with its predefined variables and the ID token request
// variables of a job with `permissions: id-token: write`, served by a real
// issuer the test runs, against the built server: the workflow_run hook
// pins the run's merge, the action checks it out; a run whose pull request
// head is not the pin's source fails with nothing fetched, and so does a
// workspace with changes, and a job without the permission.
func TestGitHubActionJob(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	iss := startJobIssuer(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--github-hook-secret", e2eGitHubSecret,
		"--access", iss.accessFile(t, "github", "group/*"))
	head, _ := p.git.RefSHA(t, "refs/heads/feature")
	merge := p.git.RecomputeMerge(t, head, p.c2, "merge", "refkeeper", "refkeeper@localhost")

	// The webhook pins run 289782451 at the merge of the pull request's
	// head into main's tip.
	const run = 289782451
	requested := testdata.HookPayload(t, "github-workflow_run-requested.json", map[string]string{"HEAD_SHA": head, "BASE_SHA": p.c1})
	code, answer := srv.deliver(t, "github", requested, map[string]string{"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": "gh-1",
		"X-Hub-Signature-256": "sha256=" + testdata.HMACHex(e2eGitHubSecret, requested)})
	wantAction(t, "workflow_run requested", code, answer, "pinned")

	// githubRun is what the runner sets for the action's step in a run of a
	// pull request whose head is prHead: its predefined variables, the
	// step's env from the action, and with idToken the ID token request.
	githubRun := func(t *testing.T, prHead string, idToken bool) (string, map[string]string) {
		workspace := runnerDir(t, filepath.Join(t.TempDir(), "_work", "app", "app"))
		ctx := map[string]string{"repository": "group/app", "run_id": strconv.Itoa(run), "workspace": workspace,
			// A pull request's run is at GitHub's merge ref: not the head.
			"sha": p.merge, "event.pull_request.head.sha": prHead}
		steps := loadGitHubAction(t, map[string]string{"url": srv.Base}, ctx)
		if len(steps) != 1 {
			t.Fatalf("%d steps, want the one checkout", len(steps))
		}
		env := map[string]string{"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": workspace,
			"GITHUB_REPOSITORY": "group/app", "GITHUB_RUN_ID": strconv.Itoa(run), "GITHUB_SHA": p.merge,
			"GITHUB_EVENT_NAME": "pull_request", "RUNNER_TEMP": t.TempDir()}
		if idToken {
			env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = iss.actionsRequest(t, "group/app", run)
		}
		for k, v := range steps[0].env {
			env[k] = v
		}
		return steps[0].script(t) + `cd "$GITHUB_WORKSPACE" && git log -1 --format="testing %H"` + "\n", env
	}

	script, env := githubRun(t, head, true)
	out, code := ciJob(t, script, env)
	if code != 0 || !strings.Contains(out, "testing "+merge) || testdata.HeadOf(t, env["GITHUB_WORKSPACE"]) != merge {
		t.Fatalf("job: exit %d, want the merge %s checked out\n%s", code, merge, out)
	}
	t.Logf("job printed:\n%s", out)

	t.Run("a pin of another commit", func(t *testing.T) {
		script, env := githubRun(t, p.c1, true)
		out, code := ciJob(t, script, env)
		if code != 1 || !strings.Contains(out, merge) || !strings.Contains(out, p.c1) || strings.Contains(out, "testing ") {
			t.Fatalf("run at another head than its pin's source: exit %d, want 1 naming both\n%s", code, out)
		}
		if !isEmpty(t, env["GITHUB_WORKSPACE"]) {
			t.Fatal("something was checked out")
		}
		t.Logf("pin of another commit: exit %d\n%s", code, out)
	})

	t.Run("a dirty work tree", func(t *testing.T) {
		dirtyCheckout(t, env["GITHUB_WORKSPACE"], script, env)
	})

	t.Run("no id-token permission", func(t *testing.T) {
		script, env := githubRun(t, head, false)
		out, code := ciJob(t, script, env)
		if code != 2 || !strings.Contains(out, "id-token: write") || !isEmpty(t, env["GITHUB_WORKSPACE"]) {
			t.Fatalf("job without an ID token: exit %d, want 2 naming the permission\n%s", code, out)
		}
		t.Logf("no id-token permission: exit %d\n%s", code, out)
	})
}

// TestRunnerDocsPipelines checks the complete pipelines of docs/runners.md
// against ci/: the GitLab one includes the component with inputs it
// declares and extends the job it adds; the GitHub one gives the job
// id-token: write and uses the action with inputs it declares; the Gitea
// and Forgejo one passes a token, since Gitea gives jobs no ID token.
func TestRunnerDocsPipelines(t *testing.T) {
	blocks := readmeBlocks(t, "<!-- ci_runner_test.go checks")
	if len(blocks) != 3 {
		t.Fatalf("%d marked pipelines in %s, want 3 (GitLab, GitHub, Gitea and Forgejo)", len(blocks), runnerDocs)
	}

	var gitlab struct {
		Include []struct {
			Component string            `yaml:"component"`
			Inputs    map[string]string `yaml:"inputs"`
		} `yaml:"include"`
		Test struct {
			Extends string `yaml:"extends"`
			Hooks   any    `yaml:"hooks"`
		} `yaml:"test"`
	}
	if err := yaml.Unmarshal([]byte(blocks[0]), &gitlab); err != nil {
		t.Fatalf("GitLab pipeline: %v", err)
	}
	if len(gitlab.Include) != 1 || !strings.Contains(gitlab.Include[0].Component, "/checkout@") {
		t.Fatalf("GitLab pipeline includes %+v, want the checkout component", gitlab.Include)
	}
	job := loadGitLabComponent(t, gitlab.Include[0].Inputs) // fails on an input it does not declare or lacks
	if gitlab.Test.Extends != job.name || gitlab.Test.Hooks != nil {
		t.Fatalf("GitLab pipeline's job extends %q (hooks %v), want %q", gitlab.Test.Extends, gitlab.Test.Hooks, job.name)
	}

	for i, name := range []string{"GitHub", "Gitea and Forgejo"} {
		var wf struct {
			Permissions map[string]string `yaml:"permissions"`
			Jobs        map[string]struct {
				Permissions map[string]string `yaml:"permissions"`
				Steps       []struct {
					Uses string            `yaml:"uses"`
					With map[string]string `yaml:"with"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal([]byte(blocks[1+i]), &wf); err != nil {
			t.Fatalf("%s workflow: %v", name, err)
		}
		test := wf.Jobs["test"]
		if len(test.Steps) == 0 || !strings.Contains(test.Steps[0].Uses, "/ci/github@") {
			t.Fatalf("%s workflow's first step %+v, want the action", name, test.Steps)
		}
		with := test.Steps[0].With
		loadGitHubAction(t, with, map[string]string{}) // fails on an input it does not declare or lacks
		idToken := wf.Permissions["id-token"] == "write" || test.Permissions["id-token"] == "write"
		switch {
		case name == "GitHub" && (!idToken || with["token"] != ""):
			t.Fatalf("GitHub workflow: id-token %v, token %q: the job's ID token must be its credential", idToken, with["token"])
		case name != "GitHub" && with["token"] == "":
			t.Fatalf("%s workflow passes no token: Gitea gives jobs no ID token", name)
		}
	}
}

// jobIssuer is the CI system's token issuer, served by the test: GitLab's
// (id_tokens) or GitHub's Actions runtime.
type jobIssuer struct{ *testdata.Issuer }

func startJobIssuer(tb testing.TB) jobIssuer { return jobIssuer{testdata.StartIssuer(tb)} }

// accessFile writes an --access file that trusts the issuer's tokens of
// kind for projects, as docs/runners.md's pipelines do, and answers its path.
func (iss jobIssuer) accessFile(tb testing.TB, kind string, projects ...string) string {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"identities": []map[string]any{
		{"issuer": iss.URL, "audience": testdata.IssuerAudience, "kind": kind, "projects": projects}}})
	if err != nil {
		tb.Fatal(err)
	}
	return writeAccess(tb, string(body))
}

// gitlabToken is the ID token GitLab gives a job of pipeline id in project,
// for the audience its id_tokens entry names.
func (iss jobIssuer) gitlabToken(tb testing.TB, aud, project string, id int64) string {
	tb.Helper()
	return iss.Token(tb, testdata.GitLabClaims(project, id, aud))
}

// actionsRequest is ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN of a job of run
// id in repository whose workflow has `permissions: id-token: write`.
func (iss jobIssuer) actionsRequest(tb testing.TB, repository string, id int64) (string, string) {
	tb.Helper()
	iss.SetActionsJob(repository, id)
	return iss.ActionsRequestURL(), testdata.IssuerActionsRequestToken
}

// TestGiteaActionJob runs the action's step as Gitea's runner does for a
// pull request's run, with the token input (Gitea gives jobs no ID token),
// against the built server driven by deliveries a real Gitea sent
// (testdata/hooks/README.md): requested pins run 1 at the merge of the head
// into main's tip, the job checks it out, completed finishes it.
func TestGiteaActionJob(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	const jobToken = "gitea-job-token-0123456789"
	access := writeAccess(t, `{"tokens": [{"name": "app-jobs", "sha256": "`+sha256Hex(jobToken)+`", "role": "pipeline", "projects": ["group/app"]}]}`)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--gitea-hook-secret", e2eGiteaSecret, "--access", access)
	head, _ := p.git.RefSHA(t, "refs/heads/feature")
	merge := p.git.RecomputeMerge(t, head, p.c2, "merge", "refkeeper", "refkeeper@localhost")
	deliver := func(name, want string) {
		t.Helper()
		header, body := testdata.HookCapture(t, name, "ci/app", "group/app",
			"38b6601a24689be99bbf222d505dc6825ca748a7", head, "fb2d781ec1555d606d77c74ca1d611fc4d8f4287", p.c1)
		code, answer := srv.deliver(t, "gitea", body, map[string]string{"X-Gitea-Event": header.Get("X-Gitea-Event"),
			"X-Gitea-Event-Type": header.Get("X-Gitea-Event-Type"), "X-Gitea-Delivery": header.Get("X-Gitea-Delivery"),
			"X-Gitea-Signature": testdata.HMACHex(e2eGiteaSecret, body)})
		wantAction(t, name, code, answer, want)
	}
	deliver("gitea-workflow_run-requested.http", "pinned")

	workspace := runnerDir(t, filepath.Join(t.TempDir(), "workspace", "group", "app"))
	// Gitea's github.sha of a pull request's run is the head.
	ctx := map[string]string{"repository": "group/app", "run_id": "1", "workspace": workspace,
		"sha": head, "event.pull_request.head.sha": head}
	steps := loadGitHubAction(t, map[string]string{"url": srv.Base, "token": jobToken}, ctx)
	env := map[string]string{"CI": "true", "GITHUB_ACTIONS": "true", "GITEA_ACTIONS": "true", "GITHUB_WORKSPACE": workspace,
		"GITHUB_REPOSITORY": "group/app", "GITHUB_RUN_ID": "1", "GITHUB_SHA": head, "GITHUB_EVENT_NAME": "pull_request"}
	for k, v := range steps[0].env {
		env[k] = v
	}
	out, code := ciJob(t, steps[0].script(t)+`cd "$GITHUB_WORKSPACE" && git log -1 --format="testing %H"`+"\n", env)
	if code != 0 || !strings.Contains(out, "testing "+merge) || testdata.HeadOf(t, workspace) != merge {
		t.Fatalf("job: exit %d, want the merge %s into main's tip checked out\n%s", code, merge, out)
	}
	t.Logf("job printed:\n%s", out)
	deliver("gitea-workflow_run-completed.http", "finished")
}
