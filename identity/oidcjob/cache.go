package oidcjob

import "sync"

// boundedCache is a mutex-guarded map that holds at most max entries:
// adding to a full one drops an arbitrary entry. Entries carry their own
// expiry, checked by the caller; the bound is what keeps a process that
// presents endless distinct tokens from growing it.
type boundedCache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	items map[K]V
}

func newBoundedCache[K comparable, V any](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{max: max, items: make(map[K]V)}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[k]
	return v, ok
}

func (c *boundedCache[K, V]) add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; !ok && len(c.items) >= c.max {
		for old := range c.items {
			delete(c.items, old)
			break
		}
	}
	c.items[k] = v
}

func (c *boundedCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
