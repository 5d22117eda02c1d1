package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/refkeeper/refkeeper/jobs"
)

// A shutdown has one budget (--shutdown-timeout), because what waits for the
// process (Kubernetes, 30 s by default, then SIGKILL) counts the whole of it.
// The budget has two parts:
//
//   - drain: the HTTP server and the task worker stop taking work and let
//     what runs finish, both at once, each until the end of this part;
//   - close: what they used (the task client, Redis, the git root's writer
//     processes and packs) is closed in the rest.
//
// Whatever is still running when a part ends is cut off: a request's
// connection is closed, a task goes back to its queue for another process
// (every task is idempotent), and a close that hangs is left to the exit.

// closeReserve is the share of the budget kept for the close part, at most
// maxCloseReserve: closing is a few round trips and the end of a git
// process, not work that grows with load.
const (
	closeReserve    = 5 // one fifth
	maxCloseReserve = 3 * time.Second
)

// drainPart is the length of the drain part of a budget.
func drainPart(budget time.Duration) time.Duration {
	return budget - min(budget/closeReserve, maxCloseReserve)
}

// stopWithin shuts the process down within budget, counted from now, and
// logs what it had to cut off. It always returns by the end of the budget.
func stopWithin(budget time.Duration, logger *slog.Logger, srv *http.Server, worker *jobs.Worker, closers *closeStack) {
	start := time.Now()
	deadline := start.Add(budget)
	drainCtx, cancel := context.WithDeadline(context.Background(), start.Add(drainPart(budget)))
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Shutdown(drainCtx); err != nil {
			// Close ends the connections still open; their handlers see
			// their request contexts cancelled.
			_ = srv.Close()
			logger.Warn("shutdown budget: cut off requests still running", "after", time.Since(start).Round(time.Millisecond).String())
		}
	}()
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		if worker != nil {
			// Bounded by the worker's own shutdown timeout (the drain
			// part): then unfinished tasks are requeued.
			worker.Shutdown()
		}
	}()
	wg.Wait()
	if !waitUntil(workerDone, deadline) {
		logger.Warn("shutdown budget: the task worker did not stop in time")
		closers.abandon() // the exit closes them
		return
	}

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		closers.closeAll()
	}()
	if !waitUntil(closed, deadline) {
		logger.Warn("shutdown budget: closing Redis and the repositories did not finish in time")
		return
	}
	logger.Info("shut down", "took", time.Since(start).Round(time.Millisecond).String(), "budget", budget.String())
}

// waitUntil waits for done until deadline and reports whether it came.
func waitUntil(done <-chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// closeStack holds what to close, closed last first. closeAll runs each
// function once: a second call (the deferred one, after stopWithin ran it
// or abandoned it) finds nothing left and returns at once.
type closeStack struct {
	mu  sync.Mutex
	fns []func()
}

func (s *closeStack) push(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, fn)
}

func (s *closeStack) closeAll() {
	s.mu.Lock()
	fns := s.fns
	s.fns = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// abandon forgets what is left to close, for a shutdown out of budget.
func (s *closeStack) abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = nil
}
