// Package jobs runs refkeeper's background work on asynq: the deletion of a
// pin's ref at its due time, and the periodic GC sweep.
//
// Delivery is at least once, so every handler is idempotent: it re-reads the
// pin before acting (refs.Service.ExpireDue), and a sweep may run twice.
// Transient failures (Redis blinking, a held git lock) are returned to asynq,
// which retries them with backoff; permanent ones are wrapped in
// asynq.SkipRetry. Deletion tasks carry a TaskID made of the pin and its due
// time, so scheduling the same deletion twice enqueues it once; periodic
// sweeps are de-duplicated across replicas with asynq.Unique.
//
// jobs imports refs; only cmd imports jobs. asynq appears only here and in
// cmd.
package jobs
