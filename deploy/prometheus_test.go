package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	dashboardFile  = "grafana/refkeeper.json"
	alertsFile     = "prometheus/alerts.yml"
	alertTestsFile = "prometheus/alerts_test.yml"
)

// TestAlertRules checks the rules with promtool and runs their unit tests.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	if out, err := run(t, nil, promtool, "check", "rules", alertsFile); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := []string{"test", "rules", alertTestsFile}
	if out, err := run(t, nil, promtool, cmd...); err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(cmd, " "), err, out)
	}
}

// alertRules is what the tests read of a rules file.
type alertRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readAlerts(tb testing.TB) alertRules {
	tb.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		tb.Fatal(err)
	}
	var rules alertRules
	if err := yaml.UnmarshalStrict(raw, &rules); err != nil {
		tb.Fatalf("%s: %v", alertsFile, err)
	}
	return rules
}

// TestEveryAlertHasCases checks that alerts_test.yml has, for every alert, a
// case where it fires and one where it must stay quiet, and that every alert
// says how bad it is and what it means.
func TestEveryAlertHasCases(t *testing.T) {
	raw, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range readAlerts(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: a case where it fires %v, one where it stays quiet %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
			if !slices.Contains([]string{"warning", "critical"}, r.Labels["severity"]) || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: severity %q, summary %q; want warning or critical and a summary and description", r.Alert, r.Labels["severity"], r.Annotations["summary"])
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts in " + alertsFile)
	}
}

// dashboard is what the tests read of the Grafana dashboard.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func readDashboard(tb testing.TB) dashboard {
	tb.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		tb.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		tb.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// TestDashboardShape checks what Grafana needs to import the dashboard and
// show every panel: unique panel ids, every panel on the chosen Prometheus
// data source, a query in every target.
func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable: %v", vars)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if strings.TrimSpace(q.Expr) == "" || q.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			for _, v := range grafanaVar.FindAllStringSubmatch(q.Expr, -1) {
				if name := v[1] + v[2]; !strings.HasPrefix(name, "__") && vars[name] == "" {
					t.Errorf("panel %q uses $%s, which the dashboard does not define", p.Title, name)
				}
			}
		}
	}
	if queries < 10 {
		t.Fatalf("%d queries in the dashboard, want the whole set", queries)
	}
}

// The parts of a PromQL expression that are not metric names.
var (
	grafanaVar   = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)
	quoted       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	rangeOrSub   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping     = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promToken    = regexp.MustCompile(`\.?[0-9][0-9a-zA-Z._]*|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	selector     = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	constantLine = regexp.MustCompile(`^vector\(\$\w+\)$`) // a dashboard variable drawn as a line
	labelValues  = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames answers the metric names an expression selects, and for
// each the label names its matchers use.
func metricNames(expr string) map[string][]string {
	names := map[string][]string{}
	expr = grafanaVar.ReplaceAllString(expr, "1")
	expr = quotedLabelsSafe(expr)
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		for _, l := range matcherLabel.FindAllStringSubmatch(m[2], -1) {
			names[m[1]] = append(names[m[1]], l[1])
		}
	}
	expr = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(expr, " ")
	expr = rangeOrSub.ReplaceAllString(expr, " ")
	expr = grouping.ReplaceAllString(expr, " ")
	for _, m := range promToken.FindAllStringSubmatch(expr, -1) {
		tok := m[0]
		if m[1] != "" || promKeywords[tok] || (tok[0] >= '0' && tok[0] <= '9') || tok[0] == '.' {
			continue // a function or aggregation, a keyword, a number or duration
		}
		if _, ok := names[tok]; !ok {
			names[tok] = nil
		}
	}
	return names
}

// quotedLabelsSafe blanks the inside of string literals, which may hold
// anything (a regexp, a route), keeping the quotes so matchers still parse.
func quotedLabelsSafe(expr string) string {
	return quoted.ReplaceAllStringFunc(expr, func(s string) string { return `""` })
}

func TestMetricNamesParse(t *testing.T) {
	for expr, want := range map[string]map[string][]string{
		`sum by (state) (rate(refkeeper_refs_created_total{job=~"$job", route="/a{b}"}[$__rate_interval])) * 60`:        {"refkeeper_refs_created_total": {"job", "route"}},
		`histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket[5m]))) > 1e3 and on (instance) up_thing == bool 1`: {"x_seconds_bucket": nil, "up_thing": nil},
		`time() - max by (project) (m_ts) > 86400 unless vector($max_age)`:                                              {"m_ts": nil},
		`a / ignoring(outcome) group_left sum without (x) (b{outcome!="ok"}) offset 5m`:                                 {"a": nil, "b": {"outcome"}},
	} {
		got := metricNames(expr)
		if len(got) != len(want) {
			t.Errorf("metricNames(%q) = %v, want %v", expr, got, want)
			continue
		}
		for name, labels := range want {
			if g, ok := got[name]; !ok || !slices.Equal(g, labels) {
				t.Errorf("metricNames(%q) = %v, want %v", expr, got, want)
			}
		}
	}
}

// usedMetrics is every metric name the dashboard and the alert rules
// select, with the label names their matchers use, and where each is used.
func usedMetrics(tb testing.TB) (map[string][]string, map[string]string) {
	tb.Helper()
	labels, where := map[string][]string{}, map[string]string{}
	add := func(expr, at string) {
		names := metricNames(expr)
		if len(names) == 0 && !constantLine.MatchString(expr) {
			tb.Errorf("%s: %q selects no metric", at, expr)
		}
		for n, ls := range names {
			labels[n] = append(labels[n], ls...)
			where[n] = at
		}
	}
	d := readDashboard(tb)
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			add(q.Expr, "dashboard panel "+p.Title)
		}
	}
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			labels[m[1]] = append(labels[m[1]], "")
			where[m[1]] = "dashboard variable " + v.Name
		}
	}
	for _, g := range readAlerts(tb).Groups {
		for _, r := range g.Rules {
			add(r.Expr, "alert "+r.Alert)
		}
	}
	return labels, where
}
