// Package systest holds refkeeper's system tests: they run the built
// binary (`refkeeper serve`, and `refkeeper checkout` in a runner's shell)
// as processes of their own and talk to them only from outside, as runners,
// orchestrators, git hosts and operators do: HTTP, the git CLI, signals,
// files on disk, Redis (a real redis-server) and /proc. Nothing here
// imports the service's packages; the layout test (cmd/refkeeper) holds
// this package's tests to testdata alone.
//
// What it holds:
//
//   - end to end: a pin's whole life, webhooks, mirrors of a real upstream,
//     computed merges, housekeeping and /metrics (e2e_test.go,
//     hooks_e2e_test.go, mirror*_e2e_test.go, merge_e2e_test.go,
//     housekeeping_e2e_test.go, metrics_test.go, checkout_readme_test.go);
//   - faults and hardening: races across replicas, kill -9, lock files, a
//     Redis outage, a full disk, slow clients, secrets, shutdown budgets,
//     the pprof listener (faults_test.go, disk_test.go, hardening_test.go,
//     shutdown_test.go, debug_test.go, listen_test.go);
//   - the soak (soak_test.go): many pipelines against two replicas while
//     replicas are killed and Redis restarts empty;
//   - the benchmarks (bench*_test.go): refkeeper side by side with the git
//     paths it replaces, printed as a markdown table.
//
// How to run which part:
//
//	go test -race -count=1 ./systest       end to end, faults, hardening
//	make soak SOAK=5m                      TestSoak (skipped unless REFKEEPER_SOAK is set)
//	make bench BENCH=smoke                 TestBench, TestBenchMerge, TestBenchMirror
//	                                       (skipped unless REFKEEPER_BENCH is set);
//	                                       the table also goes to bench-results/latest.md
//
// The binary is built once per test run (testdata.RefkeeperBinary) into a
// temporary directory that TestMain removes at the end. Unit tests of
// package main's own functions (flag parsing, the CLI's commands run in
// process, the layout test) stay in cmd/refkeeper.
//
// Nothing imports systest.
package systest
