package web

import (
	"sync"
	"testing"
	"time"
)

// TestTTLCache: a value is returned while fresh and not after its TTL; a
// forgotten key misses at once; storing again replaces; the number of keys
// stays bounded (past the bound the cache starts empty again); concurrent
// lookups, stores and forgets are safe (run with -race).
func TestTTLCache(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := newTTLCache[clientKey, clientState](time.Second)
	k := clientKey{"t1", "c1"}
	if _, ok := c.lookup(k, now); ok {
		t.Fatal("empty cache answered")
	}
	c.store(k, clientState{active: true, version: 2}, now)
	if st, ok := c.lookup(k, now.Add(999*time.Millisecond)); !ok || st.version != 2 || !st.active {
		t.Fatalf("fresh entry: %+v %v", st, ok)
	}
	if _, ok := c.lookup(k, now.Add(time.Second)); ok {
		t.Fatal("entry answered after its TTL")
	}
	if _, ok := c.lookup(clientKey{"t2", "c1"}, now); ok {
		t.Fatal("another tenant's client answered")
	}
	c.store(k, clientState{active: false, version: 3}, now)
	if st, ok := c.lookup(k, now); !ok || st.version != 3 || st.active {
		t.Fatalf("replaced entry: %+v %v", st, ok)
	}
	c.forget(k)
	if _, ok := c.lookup(k, now); ok {
		t.Fatal("forgotten entry answered")
	}
	if n := c.n.Load(); n != 0 {
		t.Fatalf("count %d after forgetting the only key", n)
	}

	for i := range maxTTLEntries + 2 {
		c.store(clientKey{"t", string(rune(i))}, clientState{version: i}, now)
	}
	size := 0
	c.m.Range(func(any, any) bool { size++; return true })
	if size > maxTTLEntries || int64(size) != c.n.Load() {
		t.Fatalf("%d entries (count %d), bound %d", size, c.n.Load(), maxTTLEntries)
	}

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k := clientKey{"t", string(rune(i % 50))}
				switch (i + g) % 3 {
				case 0:
					c.store(k, clientState{version: i}, now)
				case 1:
					c.lookup(k, now)
				default:
					c.forget(k)
				}
			}
		})
	}
	wg.Wait()
}
