package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// flagDocs is the page whose table documents every flag of serve.
var flagDocs = filepath.Join("..", "..", "docs", "running.md")

// docRow is one row of a markdown flag table: | `--name` | `ENV` | default | meaning |.
type docRow struct {
	line             int
	name, env, deflt string
}

// flagRows answers the rows of the markdown tables in text whose first cell
// is a flag (`--name`).
func flagRows(text string) []docRow {
	var rows []docRow
	for i, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		// A cell may hold an escaped \|; no flag, variable or default does.
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
		if len(cells) < 5 {
			rows = append(rows, docRow{line: i + 1})
			continue
		}
		cell := func(j int) string { return strings.Trim(strings.TrimSpace(cells[j]), "`") }
		rows = append(rows, docRow{line: i + 1, name: strings.TrimPrefix(cell(1), "--"), env: cell(2), deflt: cell(3)})
	}
	return rows
}

// TestDocsFlagTable holds the flag table of docs/running.md to serveFlags:
// the same flags, each once, with the same environment variables and the
// same defaults. A default is compared by value: the docs' text, parsed by
// the flag's own parser, must give the code's default ("60s" is "1m0s"),
// "empty" stands for an empty default, and a default worked out at start
// is written as the table says it (http://<listen>).
func TestDocsFlagTable(t *testing.T) {
	raw, err := os.ReadFile(flagDocs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range flagRows(string(raw)) {
		if r.name == "" {
			t.Errorf("%s:%d: a flag row without four cells", flagDocs, r.line)
			continue
		}
		if line, dup := seen[r.name]; dup {
			t.Errorf("%s:%d: --%s is listed again (first on line %d)", flagDocs, r.line, r.name, line)
			continue
		}
		seen[r.name] = r.line
		f, ok := lookupServeFlag(r.name)
		if !ok {
			t.Errorf("%s:%d: --%s is not a flag of refkeeper serve", flagDocs, r.line, r.name)
			continue
		}
		if r.env != f.env {
			t.Errorf("%s:%d: --%s reads %s, the docs say %s", flagDocs, r.line, r.name, f.env, r.env)
		}
		if err := docDefaultMatches(f, r.deflt); err != "" {
			t.Errorf("%s:%d: --%s: %s", flagDocs, r.line, r.name, err)
		}
	}
	for _, f := range serveFlags {
		if _, ok := seen[f.name]; !ok {
			t.Errorf("%s has no row for --%s (%s)", flagDocs, f.name, f.env)
		}
	}
}

// docDefaultMatches says how the docs' default of f differs from the
// code's, or "" when it does not.
func docDefaultMatches(f serveFlag, doc string) string {
	code := f.bind(&serveConfig{}).String()
	switch {
	case f.defaultText != "":
		if doc != f.defaultText {
			return "the default is " + f.defaultText + ", the docs say " + doc
		}
	case doc == "empty":
		if code != "" {
			return "the default is " + code + ", the docs say empty"
		}
	default:
		v := f.bind(&serveConfig{})
		if err := v.Set(doc); err != nil {
			return "the docs' default " + doc + " is not a value of the flag: " + err.Error()
		}
		if v.String() != code {
			return "the default is " + code + ", the docs say " + doc
		}
	}
	return ""
}

// TestFlagTableLivesInOnePlace: no other page repeats serve's flag table,
// which no test would then hold to the code.
func TestFlagTableLivesInOnePlace(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join("..", "..", "README.md"), filepath.Join("..", "..", "CHANGELOG.md"))
	for _, page := range pages {
		if page == flagDocs {
			continue
		}
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range flagRows(string(raw)) {
			if _, ok := lookupServeFlag(r.name); ok {
				t.Errorf("%s:%d: a row for --%s; serve's flags are documented in %s only", page, r.line, r.name, flagDocs)
			}
		}
	}
}

// TestServeFlagEnvNames: every variable is REFKEEPER_ and the flag's name in
// upper snake case, but for the three older names docs/running.md lists;
// no two flags share a name or a variable.
func TestServeFlagEnvNames(t *testing.T) {
	exceptions := map[string]string{
		"redis":       "REFKEEPER_REDIS_URL",
		"tokens":      "REFKEEPER_API_TOKENS",
		"tokens-file": "REFKEEPER_API_TOKENS_FILE",
	}
	names, envs := map[string]bool{}, map[string]bool{}
	for _, f := range serveFlags {
		want, ok := exceptions[f.name]
		if !ok {
			want = envName(f.name)
		}
		if f.env != want {
			t.Errorf("--%s reads %s, want %s", f.name, f.env, want)
		}
		if names[f.name] || envs[f.env] {
			t.Errorf("--%s (%s) is in the table twice", f.name, f.env)
		}
		names[f.name], envs[f.env] = true, true
	}
	if envName("max-age") != "REFKEEPER_MAX_AGE" {
		t.Errorf("envName(max-age) = %s", envName("max-age"))
	}
}

// TestDocsLinks: every relative link of the README, the changelog and
// docs/ names a file that exists and, with a #fragment, a heading in it (as
// GitHub makes anchors: lower case, punctuation dropped, spaces as -), so
// that moving a section cannot leave a reader at a dead end.
func TestDocsLinks(t *testing.T) {
	top := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(top, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(top, "README.md"), filepath.Join(top, "CHANGELOG.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			path, fragment, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), path)
			}
			text, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("%s links to %s: %v", page, target, err)
				continue
			}
			if fragment != "" && !slices.Contains(headingAnchors(string(text)), fragment) {
				t.Errorf("%s links to %s: %s has no heading with that anchor", page, target, file)
			}
		}
	}
	if got := headingAnchors("## `refkeeper checkout`: a job's part\n"); len(got) != 1 || got[0] != "refkeeper-checkout-a-jobs-part" {
		t.Errorf("headingAnchors = %q", got)
	}
}

// headingAnchors are the anchors GitHub gives the headings of a markdown
// page, outside fenced blocks.
func headingAnchors(text string) []string {
	var anchors []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range title {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		anchors = append(anchors, b.String())
	}
	return anchors
}

// fencedBlocksUnder answers the fenced code blocks of a markdown text with
// the heading each stands under.
func fencedBlocksUnder(text string) (blocks, headings []string) {
	var cur []string
	heading := ""
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			if fenced {
				blocks = append(blocks, strings.Join(cur, "\n"))
				headings = append(headings, heading)
				cur = nil
			}
			fenced = !fenced
		case fenced:
			cur = append(cur, line)
		case strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
	}
	return blocks, headings
}

// TestDocsJobsHoldNoAPIToken: the examples follow the security model
// (docs/security.md): a block that is a CI job's (it names the job's own
// variables or is a job definition) holds no API token, and one that looks
// its pin up gets the job's ID token from the CI system: its own lines, the
// GitLab component (which asks for it) or the action with Actions'
// `id-token: write`. Gitea's Actions give jobs no ID token: there, and only
// there, a job's block may hold a token, and the page's access file must
// make it a `pipeline` token of one project.
func TestDocsJobsHoldNoAPIToken(t *testing.T) {
	top := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(top, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(top, "README.md"))
	component, err := os.ReadFile(filepath.Join(top, "ci", "gitlab", "templates", "checkout.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(component), "REFKEEPER_ID_TOKEN:") || !strings.Contains(string(component), "aud: refkeeper") {
		t.Fatalf("the GitLab component does not ask for the job's ID token:\n%s", component)
	}
	jobMarks := []string{"$CI_PIPELINE_ID", "$GITHUB_RUN_ID", "$CI_PROJECT_DIR", "$GITHUB_WORKSPACE",
		"pre_get_sources_script", "steps:", "script:", "RUN_ID="}
	apiToken := regexp.MustCompile(`REFKEEPER_TOKEN|secrets\.REFKEEPER|--token-file|\$TOKEN\b|\$\{TOKEN\}|(^|\s)rk\s`)
	jobToken := regexp.MustCompile(`"role":\s*"pipeline",\s*"projects":\s*\["[^"*]+"\]`)
	jobs, lookups, giteaJobs := 0, 0, 0
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		blocks, headings := fencedBlocksUnder(string(raw))
		for i, b := range blocks {
			if !slices.ContainsFunc(jobMarks, func(m string) bool { return strings.Contains(b, m) }) {
				continue
			}
			jobs++
			gitea := strings.Contains(headings[i], "Gitea")
			if m := apiToken.FindString(b); m != "" {
				if !gitea || !slices.ContainsFunc(blocks, jobToken.MatchString) {
					t.Errorf("%s: a job's block uses an API token (%q); jobs use their ID token:\n%s", page, strings.TrimSpace(m), b)
				}
				giteaJobs++
			}
			checkout := strings.Contains(b, "refkeeper checkout") && strings.Contains(b, "--project")
			usesComponent := strings.Contains(b, "component:") && strings.Contains(b, "/checkout@")
			usesAction := strings.Contains(b, "/ci/github@")
			if !checkout && !usesComponent && !usesAction {
				continue
			}
			lookups++
			gitlab := usesComponent || strings.Contains(b, "id_tokens:") && strings.Contains(b, "REFKEEPER_ID_TOKEN:") && strings.Contains(b, "aud: refkeeper")
			actions := strings.Contains(b, "id-token: write")
			if !gitlab && !actions && !gitea {
				t.Errorf("%s: a job looks its pin up without its ID token (GitLab id_tokens with aud refkeeper, or Actions' id-token: write):\n%s", page, b)
			}
		}
	}
	if jobs < 5 || lookups < 3 {
		t.Fatalf("found %d job blocks, %d pin lookups: the check proves nothing", jobs, lookups)
	}
	t.Logf("%d job blocks, %d pin lookups, %d of Gitea's jobs with a pipeline token", jobs, lookups, giteaJobs)
}
