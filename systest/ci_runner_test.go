package systest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
