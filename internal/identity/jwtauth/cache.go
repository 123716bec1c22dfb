package jwtauth

import (
	"crypto/subtle"
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
// after their 64-bit keyed hashes matched (a caller cannot choose a token
// whose hash under the unknown seed matches another's), and in constant
// time all the same, as every secret is. Failures are
// never cached, so garbage cannot fill it. When full it first drops expired
// entries and, if that freed less than a quarter, drops everything: a full
// cache costs one round of full verifications, never unbounded memory
// (at most max entries of at most MaxTokenBytes).
type verifiedCache struct {
	max  int
	seed maphash.Seed
	// entries maps a token's hash to its *verifiedEntry: a lookup takes no
	// lock and writes nothing shared (a read lock's counter, written by
	// every request, cost more than the map lookup on a busy server).
	entries sync.Map
	mu      sync.Mutex // serialises put (counting and eviction)
	n       int        // entries stored, under mu
}

type verifiedEntry struct {
	token  string
	claims *Claims // never modified once stored; handed out as clones
	until  time.Time
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, seed: maphash.MakeSeed()}
}

// get returns the claims cached for token (shared: the caller must not
// modify them), or nil when there are none or they are no longer valid at
// now.
func (c *verifiedCache) get(token string, now time.Time) *Claims {
	v, ok := c.entries.Load(maphash.String(c.seed, token))
	if !ok {
		return nil
	}
	e := v.(*verifiedEntry)
	if subtle.ConstantTimeCompare([]byte(e.token), []byte(token)) != 1 || !now.Before(e.until) {
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
	e := &verifiedEntry{token: strings.Clone(token), claims: claims, until: until} // not the request's header line
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= c.max {
		c.entries.Range(func(k, v any) bool {
			if !now.Before(v.(*verifiedEntry).until) {
				c.entries.Delete(k)
				c.n--
			}
			return true
		})
		if c.n > c.max*3/4 {
			c.entries.Clear()
			c.n = 0
		}
	}
	if _, loaded := c.entries.Swap(k, e); !loaded {
		c.n++
	}
}

// len reports the number of entries (for tests).
func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
