package jwtauth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// verifiedCache remembers verified tokens until a deadline. An entry is
// found by a keyed 64-bit hash of the token (hash/maphash, with a seed
// drawn when the cache is made) and holds the token itself, which must be
// equal, byte for byte, to the one looked up: a hit is a token identical to
// one that passed every check, whatever the hash does (a collision is a
// miss, then a full verification). The hash costs a tenth of a SHA-256 of
// a typical token, the cache's key before. The tokens are compared only
// after their 64-bit keyed hashes matched, so the comparison's timing
// tells a caller nothing about a token it does not hold (it cannot choose a
// token whose hash under the unknown seed matches another's). Failures are
// never cached, so garbage cannot fill it. When full it first drops expired
// entries and, if that freed less than a quarter, drops everything: a full
// cache costs one round of full verifications, never unbounded memory
// (at most max entries of at most MaxTokenBytes).
type verifiedCache struct {
	max     int
	seed    maphash.Seed
	mu      sync.RWMutex
	entries map[uint64]verifiedEntry
}

type verifiedEntry struct {
	token  string
	claims *Claims // never modified once stored; handed out as clones
	until  time.Time
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, seed: maphash.MakeSeed(), entries: make(map[uint64]verifiedEntry)}
}

// get returns the claims cached for token (shared: the caller must not
// modify them), or nil when there are none or they are no longer valid at
// now.
func (c *verifiedCache) get(token string, now time.Time) *Claims {
	k := maphash.String(c.seed, token)
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || e.token != token || !now.Before(e.until) {
		return nil
	}
	return e.claims
}

// put remembers claims for token until until.
func (c *verifiedCache) put(token string, claims *Claims, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	k := maphash.String(c.seed, token)
	token = strings.Clone(token) // not the request's header line it may be part of
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
	c.entries[k] = verifiedEntry{token: token, claims: claims, until: until}
}

// len reports the number of entries (for tests).
func (c *verifiedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
