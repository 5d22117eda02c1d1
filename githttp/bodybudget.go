package githttp

import (
	"context"
	"sync"
)

// DefaultBodyBudget bounds the memory of the fetch negotiations read at
// once (inflated, waiting for a turn or being served): two of the largest
// a request may send. Negotiations are usually a few KiB.
const DefaultBodyBudget = 2 * maxRequestBody

// byteBudget is a pool of bytes taken and given back, waited for when
// short: request bodies are read whole before a --max-git-http turn is
// taken, and a gzip body of a few KiB inflates to maxRequestBody, so
// without it clients queued for a turn could hold any amount of memory.
type byteBudget struct {
	mu   sync.Mutex
	free int64
	wake chan struct{} // closed and replaced when bytes are given back
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{free: n, wake: make(chan struct{})}
}

// take waits for n bytes until ctx ends.
func (b *byteBudget) take(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// give returns n bytes.
func (b *byteBudget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
