package tlsconf

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestRotateIfDue: with a fake clock, no rotation before 24h, a rotation at
// 24h that keeps the previous key, and the older key dropped at the next.
func TestRotateIfDue(t *testing.T) {
	clock := newFakeClock(t0)
	r, err := NewTicketKeyRotator(&tls.Config{}, 0, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Period() != 24*time.Hour {
		t.Fatalf("period = %v", r.Period())
	}
	k0 := r.keys()
	if len(k0) != 1 {
		t.Fatalf("initial keys = %d, want 1", len(k0))
	}
	if ok, err := r.RotateIfDue(t0.Add(24*time.Hour - time.Second)); ok || err != nil {
		t.Fatalf("rotated before 24h: %v %v", ok, err)
	}
	if ok, err := r.RotateIfDue(t0.Add(24 * time.Hour)); !ok || err != nil {
		t.Fatalf("not rotated at 24h: %v %v", ok, err)
	}
	k1 := r.keys()
	if len(k1) != 2 || k1[1] != k0[0] || k1[0] == k0[0] {
		t.Fatalf("after first rotation keys should be [new, previous]")
	}
	if ok, _ := r.RotateIfDue(t0.Add(47 * time.Hour)); ok {
		t.Fatal("rotated 23h after the last rotation")
	}
	if ok, _ := r.RotateIfDue(t0.Add(48 * time.Hour)); !ok {
		t.Fatal("not rotated 24h after the last rotation")
	}
	k2 := r.keys()
	if len(k2) != 2 || k2[1] != k1[0] || k2[0] == k1[0] || k2[0] == k0[0] || k2[1] == k0[0] {
		t.Fatal("after second rotation keys should be [new, previous] without the first key")
	}
	// Idle for more than two periods: the previous key goes too.
	if ok, _ := r.RotateIfDue(t0.Add(100 * time.Hour)); !ok {
		t.Fatal("not rotated after a long idle spell")
	}
	if k := r.keys(); len(k) != 1 || k[0] == k2[0] {
		t.Fatalf("after idle spell keys = %d, want 1 fresh key", len(k))
	}
	// A clock that goes backwards forces a rotation.
	if ok, _ := r.RotateIfDue(t0); !ok {
		t.Fatal("no rotation when the clock went backwards")
	}
}

func TestRotatorPeriodErrors(t *testing.T) {
	for _, d := range []time.Duration{25 * time.Hour, -time.Minute, time.Second} {
		if _, err := NewTicketKeyRotator(&tls.Config{}, d, nil); err == nil {
			t.Errorf("period %v accepted", d)
		}
	}
	if _, err := NewTicketKeyRotator(nil, 0, nil); err == nil {
		t.Error("nil config accepted")
	}
}

// TestRun: the Run loop rotates when the clock passes the period and
// returns nil when its context ends.
func TestRun(t *testing.T) {
	clock := newFakeClock(t0)
	r, err := NewTicketKeyRotator(&tls.Config{}, time.Hour, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.tick = time.Millisecond
	before := r.keys()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for r.keys()[0] == before {
		if time.Now().After(deadline) {
			t.Fatal("Run did not rotate")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// frozenCache is a client session cache that keeps the first ticket it gets
// for each key, so a test can present an old ticket after rotations.
type frozenCache struct {
	mu sync.Mutex
	m  map[string]*tls.ClientSessionState
}

func (c *frozenCache) Get(k string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *frozenCache) Put(k string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && s != nil {
		c.m[k] = s
	}
}

// TestTicketResumptionAcrossRotation: with real handshakes and the server's
// clock moved forward, a ticket resumes within its period and the next one
// (issued under the now-previous key), and is refused after two rotations.
// The rotation here happens lazily in the handshake path, with no Run loop.
func TestTicketResumptionAcrossRotation(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cert := ecdsaCert(t)
			store, err := NewCertStore(cert)
			if err != nil {
				t.Fatal(err)
			}
			clock := newFakeClock(time.Now())
			cfg, rot, err := ServerConfigAndRotator(Options{Cert: store, Clock: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, cfg)
			client := clientConfig(t, cert)
			client.MinVersion, client.MaxVersion = v, v
			client.ClientSessionCache = &frozenCache{m: map[string]*tls.ClientSessionState{}}

			steps := []struct {
				advance time.Duration
				resume  bool
			}{
				{0, false},              // full handshake, ticket under key 0
				{time.Hour, true},       // same period
				{24 * time.Hour, true},  // one rotation: key 0 is the previous key
				{24 * time.Hour, false}, // two rotations: key 0 is gone
			}
			for i, s := range steps {
				clock.Advance(s.advance)
				st, err := dial(t, addr, client)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if st.DidResume != s.resume {
					t.Fatalf("step %d: DidResume = %v, want %v", i, st.DidResume, s.resume)
				}
			}
			if n := len(rot.keys()); n != 2 {
				t.Errorf("keys in force = %d, want 2", n)
			}
		})
	}
}
