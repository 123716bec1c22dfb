package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/keys/keystest"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Master-key providers: wrapping and unwrapping one 32-byte tenant data key,
// per provider, against raw AES-256-GCM sealing and opening the same 32
// bytes in process (the reference):
//
//	go test -run '^$' -bench 'Wrap|RawGCMKey|TenantField|RawGCMField' -benchmem ./bench/
//
// vault goes over loopback HTTP to the transit fake (internal/testkit/transit);
// pkcs11 goes through SoftHSM2 (cgo, one shared session).
func benchProvider(b *testing.B, kind string, unwrap bool) {
	mk := keys.ForTenant(keystest.Of(b, kind), "bench-tenant")
	ctx := context.Background()
	dk := make([]byte, 32)
	rand.Read(dk)
	aad := []byte("relais/tenant-data-key/v1 bench")
	w, err := mk.Wrap(ctx, dk, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if unwrap {
			_, err = mk.Unwrap(ctx, w, aad)
		} else {
			_, err = mk.Wrap(ctx, dk, aad)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrapFile(b *testing.B)     { benchProvider(b, "file", false) }
func BenchmarkUnwrapFile(b *testing.B)   { benchProvider(b, "file", true) }
func BenchmarkWrapVault(b *testing.B)    { benchProvider(b, "vault", false) }
func BenchmarkUnwrapVault(b *testing.B)  { benchProvider(b, "vault", true) }
func BenchmarkWrapPKCS11(b *testing.B)   { benchProvider(b, "pkcs11", false) }
func BenchmarkUnwrapPKCS11(b *testing.B) { benchProvider(b, "pkcs11", true) }

func rawAEAD(b *testing.B) cipher.AEAD {
	k := make([]byte, 32)
	rand.Read(k)
	blk, err := aes.NewCipher(k)
	if err != nil {
		b.Fatal(err)
	}
	a, err := cipher.NewGCMWithRandomNonce(blk)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkRawGCMKey is the reference of the wrap benchmarks: seal 32 bytes.
func BenchmarkRawGCMKey(b *testing.B) {
	a := rawAEAD(b)
	pt := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Seal(nil, nil, pt, nil)
	}
}

// benchCrypto is a tenant's field cipher as the domain services get it
// (through the keyring), on a SQLite store with one tenant.
func benchCrypto(b *testing.B) *tenants.Crypto {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	mk, err := keys.LoadFileKeyring(filepath.Join(b.TempDir(), "master.key"), true)
	if err != nil {
		b.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	t, err := ts.Create(ctx, "Bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	c, err := tenants.NewKeyring(db, mk, 0).Crypto(ctx, t.ID)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// fieldValue is a typical personal field: an email address.
var fieldValue = []byte("jane.doe+newsletter@example.com")

// BenchmarkTenantFieldSeal / Open: one email through the tenant's Crypto
// (the keyring's cached cipher: header, tenant and field binding).
func BenchmarkTenantFieldSeal(b *testing.B) {
	c := benchCrypto(b)
	b.SetBytes(int64(len(fieldValue)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Seal("contact.email", fieldValue); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTenantFieldOpen(b *testing.B) {
	c := benchCrypto(b)
	ct, _ := c.Seal("contact.email", fieldValue)
	b.SetBytes(int64(len(fieldValue)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open("contact.email", ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawGCMFieldSeal / Open: the reference, raw AES-256-GCM with a
// random nonce on the same bytes.
func BenchmarkRawGCMFieldSeal(b *testing.B) {
	a := rawAEAD(b)
	b.SetBytes(int64(len(fieldValue)))
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Seal(nil, nil, fieldValue, nil)
	}
}

func BenchmarkRawGCMFieldOpen(b *testing.B) {
	a := rawAEAD(b)
	ct := a.Seal(nil, nil, fieldValue, nil)
	b.SetBytes(int64(len(fieldValue)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Open(nil, nil, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// contactFields are a contact's four sealed text fields.
var contactFields = [][2]string{{"contact.email", "jane.doe@example.com"}, {"contact.phone", "+33612345678"},
	{"contact.first_name", "Jane"}, {"contact.last_name", "Doe"}}

// BenchmarkContactSealOwnKey: what a new contact costs in encryption with
// per-contact keys (a new key, sealed by the tenant key, and four fields
// under it), against BenchmarkContactSealTenantKey (the four fields under
// the tenant key, as before per-contact keys).
func BenchmarkContactSealOwnKey(b *testing.B) {
	c := benchCrypto(b)
	b.ReportAllocs()
	for b.Loop() {
		_, cc, err := c.NewContactKey()
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range contactFields {
			if _, err := cc.SealString(f[0], f[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkContactSealTenantKey(b *testing.B) {
	c := benchCrypto(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range contactFields {
			if _, err := c.SealString(f[0], f[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkContactOpenOwnKey: reading a contact (open its key, then four
// fields), against BenchmarkContactOpenTenantKey.
func BenchmarkContactOpenOwnKey(b *testing.B) {
	c := benchCrypto(b)
	keyEnc, cc, _ := c.NewContactKey()
	var cts [][]byte
	for _, f := range contactFields {
		ct, _ := cc.SealString(f[0], f[1])
		cts = append(cts, ct)
	}
	b.ReportAllocs()
	for b.Loop() {
		cc, err := c.ContactCipher(keyEnc)
		if err != nil {
			b.Fatal(err)
		}
		for i, f := range contactFields {
			if _, err := cc.OpenString(f[0], cts[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkContactOpenTenantKey(b *testing.B) {
	c := benchCrypto(b)
	var cts [][]byte
	for _, f := range contactFields {
		ct, _ := c.SealString(f[0], f[1])
		cts = append(cts, ct)
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, f := range contactFields {
			if _, err := c.OpenString(f[0], cts[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
