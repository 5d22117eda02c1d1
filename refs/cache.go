package refs

import (
	"sync"
	"time"
)

// Cache keeps a value per key for a while, the one cache of the service
// (the pin counts and mirror sizes metrics show, what a pin reads of a
// mirror's record, which projects this process registered lately). A value
// is loaded when absent or older than the caller's maxAge, one load per key
// at a time: a caller asking meanwhile waits for that load instead of
// making its own. A failed load is not kept. The zero value is ready; it is
// safe for concurrent use.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	entries map[K]*cacheEntry[V]
}

type cacheEntry[V any] struct {
	mu     sync.Mutex
	value  V
	loaded time.Time // zero: not loaded
}

func (c *Cache[K, V]) entry(k K) *cacheEntry[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[K]*cacheEntry[V])
	}
	e, ok := c.entries[k]
	if !ok {
		e = &cacheEntry[V]{}
		c.entries[k] = e
	}
	return e
}

// Get answers k's value, loading it first when it is absent or older than
// maxAge; load is given the value it replaces (the zero value when none).
func (c *Cache[K, V]) Get(k K, maxAge time.Duration, load func(prev V) (V, error)) (V, error) {
	e := c.entry(k)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded.IsZero() && time.Since(e.loaded) < maxAge {
		return e.value, nil
	}
	v, err := load(e.value)
	if err != nil {
		var zero V
		e.value, e.loaded = zero, time.Time{}
		return zero, err
	}
	e.value, e.loaded = v, time.Now()
	return v, nil
}

// Forget drops k's value: the next Get loads it again.
func (c *Cache[K, V]) Forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}
