// Package jobs runs refkeeper's background work on asynq: the due
// deletions of each project, and the periodic GC sweep.
//
// A project's due deletions are one task per project and one-second bucket
// (its TaskID), run at the bucket's end: every pin of the project that
// expires within the bucket asks for the same task, and its one run
// (refs.Service.ExpireDue) deletes everything due in the project in
// batches, one git transaction each. After a run, the handler asks for the
// project's next due time, never in the run's own bucket.
//
// The periodic sweep is one task per GC interval across every replica: the
// intervals are numbered on Redis's clock (TIME) and the number is the
// TaskID, kept for an interval after the sweep ran, so the replica that
// comes first in an interval enqueues it and the others find it taken.
//
// The mirrors' housekeeping pass (mirrors.Housekeeping.RunAll: git gc --auto
// in every mirror that is due) is scheduled the same way, once per
// maintenance interval across every replica, as a task of its own with its
// own timeout, so a long repack never holds up the sweep's deletions. Each
// mirror in it is guarded by the domain's per-mirror lease, so a pass
// delivered twice or overlapping the next one still runs git in a mirror
// at most once per interval and never twice at once.
//
// RegisterQueueMetrics puts asynq's own queue metrics (its x/metrics
// collector: depth by state, latency, size) on /metrics, each scrape bounded
// so that an unreachable Redis costs those series, not the whole scrape.
//
// Delivery is at least once, so every handler is idempotent: the domain
// re-reads what is due before acting, and a sweep may run twice. Transient
// failures (Redis blinking, a held git lock) are returned to asynq, which
// retries them with backoff; permanent ones are wrapped in asynq.SkipRetry.
//
// jobs imports refs and mirrors (the housekeeping pass); only cmd imports
// jobs. asynq appears only here and in cmd.
package jobs
