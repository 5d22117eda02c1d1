// Package deploy holds no code: it is the home of the files that deploy and
// watch refkeeper, and of the tests that check them against the real tools
// and the real server.
//
//   - helm/refkeeper: the Helm chart. Its tests run `helm lint` and `helm
//     template` (defaults, and every optional part on), decode every
//     rendered object strictly into the Kubernetes API types (unknown fields
//     fail), check that every flag and environment variable the chart passes
//     is one `refkeeper serve` knows, that no secret is in args, and that the
//     combinations the chart refuses are refused.
//   - grafana/refkeeper.json: the dashboard; prometheus/alerts.yml: the
//     alert rules, with `promtool test rules` cases in
//     prometheus/alerts_test.yml, run by the tests here.
//   - Every metric name the dashboard and the rules use must be exported by a
//     running server: a test builds the binary, starts it on a real
//     redis-server, drives pins, a webhook, a runner's fetch and a mirror
//     through it, and compares with what /metrics shows.
//
// helm and promtool are installed by scripts/install-deps.sh (make test
// runs it); a test fails, never skips, when one is missing.
//
// Nothing imports this package. Its tests import testdata and the
// Kubernetes and prometheus-operator API types, which nothing else may.
package deploy
