package tlsconf

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// TicketKeyRotator owns the session ticket keys of one server tls.Config.
// Every period it makes a fresh random 32-byte key and installs
// [new, previous] with tls.Config.SetSessionTicketKeys: new tickets are
// encrypted with the new key, and tickets issued during the previous period
// can still be resumed for one more period. A key is thus used to issue
// tickets for at most one period and accepted for at most two.
//
// Keys are per process: several nodes behind one name do not share them, so
// a client that moves to another node makes a full handshake instead of
// resuming. That costs a little CPU, never security.
//
// A TicketKeyRotator is safe for concurrent use.
type TicketKeyRotator struct {
	cfg    *tls.Config
	period time.Duration
	now    func() time.Time
	// tick is how often Run checks whether a rotation is due.
	tick time.Duration

	mu          sync.Mutex
	current     [32]byte
	previous    [32]byte
	hasPrevious bool
	rotatedAt   time.Time // when current was installed, read from now
}

// NewTicketKeyRotator installs a first random key on cfg and returns the
// rotator that replaces it every period (0 means 24h; at most 24h, at least
// [MinTicketKeyRotation]). now is the clock; nil means time.Now.
//
// Attach one rotator per config: two rotators on one config would overwrite
// each other's keys. A config from [ServerConfig] already has one.
func NewTicketKeyRotator(cfg *tls.Config, period time.Duration, now func() time.Time) (*TicketKeyRotator, error) {
	if cfg == nil {
		return nil, errors.New("session ticket key rotator: nil tls.Config")
	}
	if period == 0 {
		period = DefaultTicketKeyRotation
	}
	if err := checkRotationPeriod(period); err != nil {
		return nil, fmt.Errorf("session ticket key rotator: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	r := &TicketKeyRotator{
		cfg:    cfg,
		period: period,
		now:    now,
		tick:   min(time.Minute, period/4),
	}
	key, err := newTicketKey()
	if err != nil {
		return nil, err
	}
	r.current = key
	r.rotatedAt = now()
	cfg.SetSessionTicketKeys([][32]byte{key})
	return r, nil
}

// Period returns the rotation period in force.
func (r *TicketKeyRotator) Period() time.Duration { return r.period }

// RotateIfDue rotates the keys if a full period has passed since the last
// rotation (or if the clock went backwards), and reports whether it did.
// When two periods or more have passed, as after a long idle spell, the
// previous key is dropped as well, so no ticket outlives the bound.
func (r *TicketKeyRotator) RotateIfDue(now time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := now.Sub(r.rotatedAt)
	if elapsed >= 0 && elapsed < r.period {
		return false, nil
	}
	key, err := newTicketKey()
	if err != nil {
		return false, err
	}
	if elapsed >= 0 && elapsed < 2*r.period {
		r.previous, r.hasPrevious = r.current, true
		r.cfg.SetSessionTicketKeys([][32]byte{key, r.previous})
	} else {
		r.previous, r.hasPrevious = [32]byte{}, false
		r.cfg.SetSessionTicketKeys([][32]byte{key})
	}
	r.current = key
	r.rotatedAt = now
	return true, nil
}

// Run calls RotateIfDue with the rotator's clock about once a minute (more
// often for periods under four minutes) until ctx is done, then returns nil.
// It returns early only if a key cannot be generated. Running it is
// optional for the 24h bound when the config comes from [ServerConfig],
// which also rotates at handshakes, but it lets an idle server drop old keys
// on time.
func (r *TicketKeyRotator) Run(ctx context.Context) error {
	t := time.NewTicker(r.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := r.RotateIfDue(r.now()); err != nil {
				return err
			}
		}
	}
}

// keys returns the keys in force, newest first (for tests).
func (r *TicketKeyRotator) keys() [][32]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hasPrevious {
		return [][32]byte{r.current, r.previous}
	}
	return [][32]byte{r.current}
}

func newTicketKey() ([32]byte, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("session ticket key: read random bytes: %w; check the system's random source", err)
	}
	return k, nil
}
