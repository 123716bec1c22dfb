package jwtauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

func TestNewKeyStoreOptions(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ks := e.ks
		if ks.rotateEvery != DefaultRotateEvery || ks.overlap != 2*MaxLifetime || ks.prepublish != DefaultPrepublish {
			t.Fatalf("defaults: rotate %v overlap %v prepublish %v", ks.rotateEvery, ks.overlap, ks.prepublish)
		}
		short, err := NewKeyStore(e.db, e.mk, KeyStoreOptions{RotateEvery: 5 * time.Hour})
		if err != nil || short.prepublish != 30*time.Minute {
			t.Fatalf("prepublish for a 5 h period: %v, %v", short, err)
		}
		for name, o := range map[string]KeyStoreOptions{
			"overlap shorter than a token":    {Overlap: MaxLifetime - time.Second},
			"prepublish not below the period": {RotateEvery: time.Hour, Prepublish: time.Hour},
			"negative period":                 {RotateEvery: -time.Hour},
		} {
			if _, err := NewKeyStore(e.db, e.mk, o); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, err := NewKeyStore(nil, e.mk, KeyStoreOptions{}); err == nil {
			t.Error("nil store accepted")
		}
		if _, err := NewKeyStore(e.db, nil, KeyStoreOptions{}); err == nil {
			t.Error("nil master key accepted")
		}
	})
}

// TestRotation walks one key through its life: it signs for RotateEvery, its
// successor is published an hour ahead, its tokens keep verifying while the
// key lives, and once past expires_at it verifies nothing and Prune deletes
// it. Every step is in the platform audit log.
func TestRotation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		t0 := e.clk.Now()
		ensure(t, e.ks)
		ensure(t, e.ks) // idempotent
		if kids := keyRows(t, e.db); len(kids) != 1 {
			t.Fatalf("after two EnsureCurrent: %d keys", len(kids))
		}
		k1 := currentKey(t, e.node)

		e.clk.Set(t0.Add(DefaultRotateEvery - 2*time.Hour))
		ensure(t, e.ks)
		if n := len(keyRows(t, e.db)); n != 1 {
			t.Fatalf("rotated too early: %d keys", n)
		}

		// Within Prepublish of retirement the successor appears, but k1
		// still signs.
		e.clk.Set(t0.Add(DefaultRotateEvery - 30*time.Minute))
		ensure(t, e.ks)
		ensure(t, e.ks)
		if n := len(keyRows(t, e.db)); n != 2 {
			t.Fatalf("after rotation: %d keys, want 2", n)
		}
		if k := currentKey(t, e.node); k.kid != k1.kid {
			t.Fatalf("the successor signs before it is published for an hour")
		}
		if ks := jwksKeys(t, e.ks); len(ks) != 2 {
			t.Fatalf("JWKS during prepublication: %d keys", len(ks))
		}
		req := goodRequest()
		req.Lifetime = MaxLifetime
		tokOld := issue(t, e.node, req) // signed by k1, valid until t0+30d+30m

		// After RotateEvery, the new key signs.
		e.clk.Set(t0.Add(DefaultRotateEvery))
		ensure(t, e.ks)
		k2 := currentKey(t, e.node)
		if k2.kid == k1.kid {
			t.Fatal("k1 still signs after RotateEvery")
		}
		if h, _, _ := segments(t, issue(t, e.node, goodRequest())); h["kid"] != k2.kid {
			t.Fatalf("new token signed by %v, want %s", h["kid"], k2.kid)
		}

		// k1's tokens verify until they expire.
		e.clk.Set(t0.Add(DefaultRotateEvery + 29*time.Minute))
		if _, err := e.newNode(t).ver.Verify(ctx, tokOld); err != nil {
			t.Fatalf("k1 token refused before its exp: %v", err)
		}
		e.clk.Set(t0.Add(DefaultRotateEvery + 31*time.Minute))
		refused(t, e.newNode(t), tokOld, ErrExpired)

		// A token k1 could still have signed (forged here with k1's private
		// key, valid for another hour) verifies until k1's expires_at...
		k1Expires := t0.Add(DefaultRotateEvery + DefaultOverlap)
		late := signToken(t, jwt.SigningMethodEdDSA, k1.priv, map[string]any{"kid": k1.kid, "typ": "at+jwt"}, goodClaims(k1Expires.Add(-10*time.Minute)))
		e.clk.Set(k1Expires.Add(-time.Minute))
		mustVerify(t, e.newNode(t), late)
		// ...and not a moment longer, even before Prune, even on a node that
		// has it cached.
		e.clk.Set(k1Expires)
		refused(t, e.newNode(t), late, ErrInvalid)
		refused(t, e.node, late, ErrInvalid)
		if ks := jwksKeys(t, e.ks); len(ks) != 1 || ks[0]["kid"] != k2.kid {
			t.Fatalf("JWKS after k1 expired: %v", ks)
		}

		n, err := e.ks.Prune(ctx)
		if err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want 1", n, err)
		}
		if kids := keyRows(t, e.db); !slices.Equal(kids, []string{k2.kid}) {
			t.Fatalf("after Prune: %v", kids)
		}
		if n, err := e.ks.Prune(ctx); err != nil || n != 0 {
			t.Fatalf("second Prune = %d, %v", n, err)
		}
		e.clk.Set(k1Expires.Add(-time.Minute)) // even with the clock set back, k1 is gone
		refused(t, e.newNode(t), late, ErrInvalid)

		var got []string
		for _, r := range platformEvents(t, e.db) {
			if r.Category != audit.CategoryKey {
				t.Errorf("event %s in category %s", r.Action, r.Category)
			}
			got = append(got, r.Action+" "+r.ObjectID)
		}
		want := []string{actionCreate + " " + k1.kid, actionCreate + " " + k2.kid, actionRetire + " " + k1.kid, actionDelete + " " + k1.kid}
		if !slices.Equal(got, want) {
			t.Fatalf("audit trail:\n got %q\nwant %q", got, want)
		}
	})
}

// TestLateRotation: when nobody called EnsureCurrent for a whole period,
// Issue heals by creating a key (recorded as the system's doing), which
// signs at once, and the old key's retirement is still recorded.
func TestLateRotation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// No key at all: the first Issue creates one.
		tok := issue(t, e.node, goodRequest())
		k1 := currentKey(t, e.node)
		mustVerify(t, e.node, tok)

		e.clk.Advance(DefaultRotateEvery + time.Minute)
		actx := audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorAPI, ID: "cli-1"}, RequestID: "req-7"})
		tok2, _, err := e.iss.Issue(actx, goodRequest())
		if err != nil {
			t.Fatalf("Issue after a missed rotation: %v", err)
		}
		h, _, _ := segments(t, tok2)
		if h["kid"] == k1.kid || len(keyRows(t, e.db)) != 2 {
			t.Fatalf("no new key after a missed rotation (kid %v)", h["kid"])
		}
		mustVerify(t, e.node, tok2)
		evs := platformEvents(t, e.db)
		if len(evs) != 3 {
			t.Fatalf("%d events, want create, create, retire", len(evs))
		}
		last := evs[len(evs)-2:]
		if last[0].Action != actionCreate || last[1].Action != actionRetire || last[1].ObjectID != k1.kid ||
			last[0].ActorType != audit.ActorSystem || last[0].RequestID != "req-7" {
			t.Fatalf("events: %+v", last)
		}
	})
}

// TestJWKSIndependentCheck parses the JWKS and checks tokens with
// crypto/ed25519 directly, without this package or the JWT library.
func TestJWKSIndependentCheck(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		if ks := jwksKeys(t, e.ks); len(ks) != 0 {
			t.Fatalf("JWKS before any key: %v", ks)
		}
		ensure(t, e.ks)
		tok1 := issue(t, e.node, goodRequest())
		e.clk.Advance(DefaultRotateEvery)
		ensure(t, e.ks)
		tok2 := issue(t, e.node, goodRequest())

		raw, err := e.ks.JWKS(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(`"d"`)) {
			t.Fatalf("JWKS contains private material: %s", raw)
		}
		set := jwksKeys(t, e.ks)
		var kids []string
		byKid := map[string]ed25519.PublicKey{}
		for _, k := range set {
			if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || len(k) != 6 {
				t.Fatalf("JWK %v", k)
			}
			x, err := base64.RawURLEncoding.DecodeString(k["x"])
			if err != nil || len(x) != ed25519.PublicKeySize {
				t.Fatalf("JWK x %q: %v", k["x"], err)
			}
			kids = append(kids, k["kid"])
			byKid[k["kid"]] = x
		}
		stored := keyRows(t, e.db)
		slices.Sort(kids)
		if !slices.Equal(kids, stored) {
			t.Fatalf("JWKS kids %v, live keys %v", kids, stored)
		}
		for _, tok := range []string{tok1, tok2} {
			h, _, parts := segments(t, tok)
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			pub := byKid[h["kid"].(string)]
			if pub == nil || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
				t.Fatalf("token of kid %v does not verify against the JWKS", h["kid"])
			}
			if ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]+"x"), sig) {
				t.Fatal("the JWKS check accepts anything")
			}
		}
		// Once the old key has expired, the JWKS lists exactly the one left.
		e.clk.Advance(DefaultOverlap)
		if _, err := e.ks.Prune(context.Background()); err != nil {
			t.Fatal(err)
		}
		if set := jwksKeys(t, e.ks); len(set) != 1 || !slices.Equal(keyRows(t, e.db), []string{set[0]["kid"]}) {
			t.Fatalf("JWKS after prune: %v", set)
		}
	})
}

// TestPrivateKeyNotStoredInClear scans the key row and the audit log for the
// private key in any usual encoding, and checks the wrap is bound to the kid.
func TestPrivateKeyNotStoredInClear(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		seed := k.priv.Seed()
		needles := [][]byte{
			seed, k.priv, // raw seed, raw 64-byte key
			[]byte(hex.EncodeToString(seed)), []byte(base64.StdEncoding.EncodeToString(seed)),
			[]byte(base64.RawURLEncoding.EncodeToString(seed)), []byte(base64.StdEncoding.EncodeToString(k.priv)),
		}
		var cols [][]byte
		var wrap []byte
		err := e.db.Platform(context.Background(), func(p *store.PlatformTx) error {
			var kid, alg string
			var pub []byte
			var c, r, x int64
			if err := p.QueryRow(context.Background(), `SELECT kid, alg, public_key, private_wrap, created_at, retire_at, expires_at FROM signing_keys`).
				Scan(&kid, &alg, &pub, &wrap, &c, &r, &x); err != nil {
				return err
			}
			cols = append(cols, []byte(kid), []byte(alg), pub, wrap)
			if err := audit.SequenceLog(context.Background(), p.Tenant("")); err != nil {
				return err
			}
			rows, err := p.Query(context.Background(), `SELECT details FROM audit_events`)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var d string
				if err := rows.Scan(&d); err != nil {
					return err
				}
				cols = append(cols, []byte(d))
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, col := range cols {
			for j, n := range needles {
				if bytes.Contains(col, n) {
					t.Fatalf("column %d holds the private key (encoding %d)", i, j)
				}
			}
		}
		// The wrap opens only for its own kid.
		if _, err := e.mk.Unwrap(context.Background(), wrap, keyAAD(k.kid)); err != nil {
			t.Fatalf("unwrap with the right kid: %v", err)
		}
		if _, err := e.mk.Unwrap(context.Background(), wrap, keyAAD(randomID())); err == nil {
			t.Fatal("the wrapped key opens under another kid")
		}
	})
}

// TestTamperedKeyRowsAreNotTrusted plays an attacker with write access to the
// database but not the master key: no key they add or alter verifies.
func TestTamperedKeyRowsAreNotTrusted(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k1 := currentKey(t, e.node)
		tok1 := issue(t, e.node, goodRequest())
		attackerPub, attackerPriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		now := e.clk.Now()
		forge := func(kid string) string {
			return signToken(t, jwt.SigningMethodEdDSA, attackerPriv, map[string]any{"kid": kid, "typ": "at+jwt"}, goodClaims(now))
		}

		// 1. A whole row of the attacker's, with a wrap copied from k1.
		var k1Wrap []byte
		err = e.db.Platform(context.Background(), func(p *store.PlatformTx) error {
			return p.QueryRow(context.Background(), `SELECT private_wrap FROM signing_keys WHERE kid = $1`, k1.kid).Scan(&k1Wrap)
		})
		if err != nil {
			t.Fatal(err)
		}
		evil := randomID()
		platformExec(t, e.db, `INSERT INTO signing_keys (kid, alg, public_key, private_wrap, created_at, retire_at, expires_at) VALUES ($1, 'EdDSA', $2, $3, $4, $5, $6)`,
			evil, []byte(attackerPub), k1Wrap, store.Micros(now), store.Micros(now.Add(time.Hour)), store.Micros(now.Add(3*time.Hour)))
		fresh := e.newNode(t)
		refused(t, fresh, forge(evil), ErrInvalid)
		for _, k := range jwksKeys(t, fresh.ks) {
			if k["kid"] == evil {
				t.Fatal("the injected key is published in the JWKS")
			}
		}
		mustVerify(t, fresh, tok1) // the genuine key still works

		// 2. k1's public key replaced by the attacker's.
		platformExec(t, e.db, `UPDATE signing_keys SET public_key = $1 WHERE kid = $2`, []byte(attackerPub), k1.kid)
		fresh = e.newNode(t)
		refused(t, fresh, forge(k1.kid), ErrInvalid)
		if ks := jwksKeys(t, fresh.ks); len(ks) != 0 {
			t.Fatalf("JWKS publishes a tampered key: %v", ks)
		}
		// The running node re-checks the changed row on its next reload.
		e.mono.Advance(minReloadInterval)
		refused(t, e.node, forge(k1.kid), ErrInvalid)
		if _, err := e.ks.JWKS(context.Background()); err != nil {
			t.Fatal(err)
		}
		if k := e.ks.view.Load().get(k1.kid); k != nil {
			t.Fatal("the running node still trusts the tampered key")
		}

		// 3. Another key's algorithm changed: ignored.
		platformExec(t, e.db, `UPDATE signing_keys SET alg = 'HS256', public_key = $1 WHERE kid = $2`, []byte(k1.pub), k1.kid)
		refused(t, e.newNode(t), tok1, ErrInvalid)
	})
}

// TestTwoNodesAgree runs two nodes on one store: concurrent EnsureCurrent
// creates one key, and each node verifies the other's tokens, across a
// rotation done by one of them.
func TestTwoNodesAgree(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		a, b := e.node, e.newNode(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			n := a
			if i%2 == 1 {
				n = b
			}
			wg.Go(func() { errs <- n.ks.EnsureCurrent(context.Background()) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent EnsureCurrent: %v", err)
			}
		}
		if kids := keyRows(t, e.db); len(kids) != 1 {
			t.Fatalf("concurrent EnsureCurrent created %d keys", len(kids))
		}
		mustVerify(t, b, issue(t, a, goodRequest()))
		mustVerify(t, a, issue(t, b, goodRequest()))

		// Node a rotates; b learns the new key when it first sees it.
		e.clk.Advance(DefaultRotateEvery)
		ensure(t, a.ks)
		tok := issue(t, a, goodRequest())
		refused(t, b, tok, ErrInvalid) // b reloaded less than a second ago
		e.mono.Advance(minReloadInterval)
		if c := mustVerify(t, b, tok); c.Tenant != "acme" {
			t.Fatalf("claims %+v", c)
		}
		if ka, kb := currentKey(t, a).kid, currentKey(t, b).kid; ka != kb {
			t.Fatalf("nodes sign with different keys: %s, %s", ka, kb)
		}
		mustVerify(t, a, issue(t, b, goodRequest()))
	})
}

// TestUnknownKidReloadIsRateLimited: a flood of tokens with made-up kids
// reads the store at most once per second per node.
func TestUnknownKidReloadIsRateLimited(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		n := e.newNode(t)
		mono := e.mono
		mustVerify(t, n, issue(t, e.node, goodRequest())) // first load
		base := n.ks.reloads.Load()
		flood := func() {
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					tok := signToken(t, jwt.SigningMethodEdDSA, k.priv, map[string]any{"kid": randomID(), "typ": "at+jwt"}, goodClaims(e.clk.Now()))
					if _, err := n.ver.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
						t.Errorf("unknown kid: %v", err)
					}
				})
			}
			wg.Wait()
		}
		flood()
		if got := n.ks.reloads.Load() - base; got != 0 {
			t.Fatalf("%d reloads within a second of the first load, want 0", got)
		}
		mono.Advance(minReloadInterval)
		flood()
		if got := n.ks.reloads.Load() - base; got != 1 {
			t.Fatalf("%d reloads after a second, want 1", got)
		}
		// Known kids never touch the store.
		mono.Advance(time.Hour)
		for range 20 {
			mustVerify(t, n, issue(t, e.node, goodRequest()))
		}
		if got := n.ks.reloads.Load() - base; got != 1 {
			t.Fatalf("verifying known kids reloaded the keys (%d)", got)
		}
	})
}

// TestStoreFailureIsNotATokenError: when the keys cannot be read, Verify
// says so instead of blaming the token.
func TestStoreFailureIsNotATokenError(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		tok := issue(t, e.node, goodRequest())
		n := e.newNode(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := n.ver.Verify(ctx, tok)
		if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrExpired) {
			t.Fatalf("Verify with an unreachable store: %v", err)
		}
		if !strings.Contains(err.Error(), "signing keys") {
			t.Fatalf("error does not say what failed: %v", err)
		}
	})
}
