package limits

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Slots bounds how many of one kind of work run at once. A nil *Slots
// bounds nothing. It is safe for concurrent use.
type Slots struct {
	// What names the work in errors ("upstream fetches").
	What    string
	sem     chan struct{}
	waiting atomic.Int64
}

// NewSlots is a bound of n at once; n < 1: no bound (nil).
func NewSlots(what string, n int) *Slots {
	if n < 1 {
		return nil
	}
	return &Slots{What: what, sem: make(chan struct{}, n)}
}

// Acquire takes a slot, waiting until one is free or ctx ends; then it
// answers *BusyError and holds nothing. release gives the slot back; call
// it exactly once.
func (s *Slots) Acquire(ctx context.Context) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case s.sem <- struct{}{}:
		return s.release, nil
	default:
	}
	start := time.Now()
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.sem <- struct{}{}:
		return s.release, nil
	case <-ctx.Done():
		return nil, &BusyError{What: s.What, Limit: cap(s.sem), Waited: time.Since(start), Cause: context.Cause(ctx)}
	}
}

// TryAcquire takes a slot only when one is free now and nobody waits for
// one (work that may be skipped never goes ahead of work that waits).
func (s *Slots) TryAcquire() (release func(), ok bool) {
	if s == nil {
		return func() {}, true
	}
	if s.waiting.Load() > 0 {
		return nil, false
	}
	select {
	case s.sem <- struct{}{}:
		return s.release, true
	default:
		return nil, false
	}
}

// AcquireWithin is Acquire waiting at most wait.
func (s *Slots) AcquireWithin(ctx context.Context, wait time.Duration) (release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return s.Acquire(ctx)
}

func (s *Slots) release() { <-s.sem }

// InUse is how many slots are taken now.
func (s *Slots) InUse() int {
	if s == nil {
		return 0
	}
	return len(s.sem)
}

// Waiting is how many callers wait for a slot now.
func (s *Slots) Waiting() int {
	if s == nil {
		return 0
	}
	return int(s.waiting.Load())
}

// Limit is the bound; 0 for none.
func (s *Slots) Limit() int {
	if s == nil {
		return 0
	}
	return cap(s.sem)
}

// BusyError is work that found every slot taken until its caller's
// deadline: nothing was done, and retrying later is safe.
type BusyError struct {
	What   string
	Limit  int
	Waited time.Duration
	// Cause is why the wait ended (the caller's deadline or cancellation).
	Cause error
}

func (e *BusyError) Error() string {
	if e.Waited <= 0 {
		return fmt.Sprintf("%d %s already running; no turn came in time", e.Limit, e.What)
	}
	return fmt.Sprintf("%d %s already running; waited %s for a turn", e.Limit, e.What, e.Waited.Round(time.Millisecond))
}
