package bench

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/password"
)

// loginEnv is a SQLite store with one tenant and one user whose password
// uses the default cost (PBKDF2-HMAC-SHA256, 600,000 iterations).
func loginEnv(b *testing.B) (*identity.Service, string) {
	b.Helper()
	ctx := context.Background()
	env := openTenantEnv(b, "", "Bench", "bench")
	id := &identity.Service{DB: env.db, Tenants: env.tenants, Keyring: env.keyring}
	const pw = "Quiet-Harbour-Lantern-71"
	if _, _, err := id.CreateUser(ctx, env.tenant.ID, identity.NewUser{Email: "bench@bench.test", Name: "Bench", Password: pw}); err != nil {
		b.Fatal(err)
	}
	return id, pw
}

// BenchmarkLogin is a full password sign-in: tenant and policy lookup,
// atomic attempt counters, PBKDF2 verification, session creation and the
// audit events, on SQLite.
func BenchmarkLogin(b *testing.B) {
	id, pw := loginEnv(b)
	ctx := context.Background()
	c := identity.Client{IP: "127.0.0.1", Port: "40000", UserAgent: "bench"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := id.Login(ctx, identity.LoginRequest{Tenant: "bench", Email: "bench@bench.test", Password: pw, Client: c})
		if err != nil || res.Session == nil {
			b.Fatalf("login: %v", err)
		}
	}
}

// BenchmarkRawPBKDF2 is the reference: the bare key derivation at the same
// cost, which is the floor of any login.
func BenchmarkRawPBKDF2(b *testing.B) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	p := password.DefaultPBKDF2()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pbkdf2.Key(sha256.New, "Quiet-Harbour-Lantern-71", salt, p.Iterations, 32); err != nil {
			b.Fatal(fmt.Errorf("pbkdf2: %w", err))
		}
	}
}

// BenchmarkLoginUnknownUser signs in as an account that does not exist.
// It must cost about what BenchmarkLoginWrongPassword costs (the ratio is
// in bench/README.md): an attacker must not tell accounts apart by timing.
func BenchmarkLoginUnknownUser(b *testing.B) {
	id, _ := loginEnv(b)
	ctx := context.Background()
	c := identity.Client{IP: "127.0.0.1", Port: "40000", UserAgent: "bench"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate addresses so the per-address limit never throttles.
		c.IP = fmt.Sprintf("10.0.%d.%d", i/250%250, i%250)
		if _, err := id.Login(ctx, identity.LoginRequest{Tenant: "bench", Email: "ghost@bench.test", Password: "Not-The-Password-1", Client: c}); err == nil {
			b.Fatal("unknown user signed in")
		}
	}
}

// BenchmarkLoginWrongPassword signs in to an existing account with a wrong
// password (the counter is reset every 4 attempts so it never locks).
func BenchmarkLoginWrongPassword(b *testing.B) {
	id, _ := loginEnv(b)
	ctx := context.Background()
	c := identity.Client{IP: "127.0.0.1", Port: "40000", UserAgent: "bench"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.IP = fmt.Sprintf("10.1.%d.%d", i/250%250, i%250)
		pw := "Not-The-Password-1"
		if i%4 == 3 {
			pw = "Quiet-Harbour-Lantern-71" // a success resets the failure counter
		}
		_, _ = id.Login(ctx, identity.LoginRequest{Tenant: "bench", Email: "bench@bench.test", Password: pw, Client: c})
	}
}
