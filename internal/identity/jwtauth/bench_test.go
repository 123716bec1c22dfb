package jwtauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// benchNode is a node over a SQLite store with one key and a typical token.
func benchNode(b *testing.B) (*node, string) {
	b.Helper()
	db := storetest.OpenSQLite(b, storetest.Options{})
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(b.TempDir(), "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	ks, err := NewKeyStore(db, mk, KeyStoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ensure(b, ks)
	n := &node{ks: ks, iss: NewIssuer(ks, Config{}), ver: NewVerifier(ks, Config{})}
	tok := issue(b, n, goodRequest())
	mustVerify(b, n, tok) // keys loaded
	return n, tok
}

// BenchmarkVerifyCached is the per-request cost once a token has been seen:
// a keyed hash of the token, a map lookup, a comparison with the stored
// token and a copy of the claims.
func BenchmarkVerifyCached(b *testing.B) {
	n, tok := benchNode(b)
	ctx := context.Background()
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.ver.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyAccessCached is the same through VerifyAccess (no copy
// of the claims: what the API calls).
func BenchmarkVerifyAccessCached(b *testing.B) {
	n, tok := benchNode(b)
	ctx := context.Background()
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.ver.VerifyAccess(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedParallel is the cached path under contention.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	n, tok := benchNode(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := n.ver.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyUncached is a full verification: parse, key lookup in
// memory, Ed25519 signature, claims.
func BenchmarkVerifyUncached(b *testing.B) {
	n, tok := benchNode(b)
	ctx := context.Background()
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := n.ver.verify(ctx, tok, n.ks.clock()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the reference: crypto/ed25519.Verify alone on a
// message of the size of a token's signing input.
func BenchmarkEd25519Verify(b *testing.B) {
	_, tok := benchNode(b)
	msg := []byte(tok[:strings.LastIndexByte(tok, '.')])
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sig := ed25519.Sign(priv, msg)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
