// Package refstest builds the pin service tests run against: a
// refs.Service over a real repos root holding the merge request project of
// testdata (group/app) and a real redis-server, both started for the test
// and gone when it ends. It is the one fixture of that kind; tests that need
// more (a scheduler, metrics, mirrors, a clock) set the fields of what it
// built before they use it.
//
// refstest imports refs, gitops and testdata. Only tests import it (api,
// githttp, hooks, jobs, mirrors and cmd tests; refs' own tests are inside the
// package and cannot).
package refstest
