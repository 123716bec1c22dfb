package jwtauth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCache remembers verified tokens by their SHA-256 until a deadline.
// The key is a hash of the whole token, so a hit is a token byte-for-byte
// identical to one that passed every check (finding another token with the
// same hash would be a SHA-256 collision); the map lookup leaks nothing about
// a secret the caller does not already hold. Failures are never cached, so
// garbage cannot fill it. When full it first drops expired entries and, if
// that freed less than a quarter, drops everything: a full cache costs one
// round of full verifications, never unbounded memory.
type verifiedCache struct {
	max     int
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	claims *Claims // never modified once stored; handed out as clones
	until  time.Time
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, entries: make(map[[sha256.Size]byte]verifiedEntry)}
}

// get returns the claims cached for sum (shared: the caller must not
// modify them), or nil when there are none or they are no longer valid at
// now.
func (c *verifiedCache) get(sum [sha256.Size]byte, now time.Time) *Claims {
	c.mu.RLock()
	e, ok := c.entries[sum]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil
	}
	return e.claims
}

// put remembers claims for sum until until.
func (c *verifiedCache) put(sum [sha256.Size]byte, claims *Claims, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) > c.max*3/4 {
			clear(c.entries)
		}
	}
	c.entries[sum] = verifiedEntry{claims: claims, until: until}
}

// len reports the number of entries (for tests).
func (c *verifiedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
