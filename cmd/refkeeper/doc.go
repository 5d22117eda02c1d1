// Command refkeeper pins the refs CI pipelines test, serves them to runners
// and deletes them when they are no longer needed.
//
//	refkeeper serve [flags]   run the HTTP API, the task workers and the GC
//	                          scheduler (--role api|worker|all)
//	refkeeper pin|finish|get|list|delete|close|gc|projects
//	                          the API's client for people and scripts
//	refkeeper checkout DIR    a job's fetch of its pinned ref
//	refkeeper version         print the version
//
// The client commands (pin … checkout) are package cli's, which the job
// binary (cmd/refkeeper-job, without cgo) runs too; main dispatches to it.
//
// main only turns process arguments, environment and signals into a call of
// run; each subcommand lives in its own file. This is the one place that
// builds concrete values (Redis clients, the repos root, the service, the
// HTTP server, the workers) and wires them together.
//
// serve reads its settings from flags over environment variables over
// defaults, all from one table, serveFlags (config.go), which docs_test.go
// holds the flag table of docs/running.md to; secrets may come from files.
// After SIGTERM or SIGINT it shuts down within the one budget of
// --shutdown-timeout (shutdown.go); --debug-listen serves pprof with secret
// flag values redacted (debug.go). redis.go reads the --redis URL forms;
// redislog.go checks Redis at start (refused credentials exit 2) and gives
// the Redis clients' own messages (go-redis's, asynq's) one sparse JSON log.
package main
