package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"
)

// The field benchmarks and their raw AES-256-GCM references work on the same
// 1 KiB plaintext, so that the cost of the field format (header, additional
// data, random nonce, bounds checks, allocation) reads as a ratio:
//
//	go test -run '^$' -bench . -benchmem ./internal/keys/
const benchSize = 1024

func benchFieldCipher(b *testing.B) *FieldCipher {
	c, err := NewFieldCipher("tenant-0f8fad5b-d9cb-469f-a165-70867728950e", 1, newDataKey(b))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkFieldSeal(b *testing.B) {
	c := benchFieldCipher(b)
	pt := seq(benchSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Seal("notes", pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFieldOpen(b *testing.B) {
	c := benchFieldCipher(b)
	ct, err := c.Seal("notes", seq(benchSize))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open("notes", ct); err != nil {
			b.Fatal(err)
		}
	}
}

// rawGCM is the reference: crypto/aes and crypto/cipher used directly.
func rawGCM(b *testing.B) cipher.AEAD {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead
}

// BenchmarkRawAESGCMSeal draws a random nonce and seals into a fresh buffer,
// as any correct use must.
func BenchmarkRawAESGCMSeal(b *testing.B) {
	aead := rawGCM(b)
	pt := seq(benchSize)
	nonce := make([]byte, aead.NonceSize())
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		rand.Read(nonce)
		_ = aead.Seal(nil, nonce, pt, nil)
	}
}

func BenchmarkRawAESGCMOpen(b *testing.B) {
	aead := rawGCM(b)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	ct := aead.Seal(nil, nonce, seq(benchSize), nil)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := aead.Open(nil, nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndexSum(b *testing.B) {
	bi, err := NewBlindIndex("tenant-0f8fad5b-d9cb-469f-a165-70867728950e", newDataKey(b))
	if err != nil {
		b.Fatal(err)
	}
	v := []byte("alice@example.com")
	b.ReportAllocs()
	for b.Loop() {
		_ = bi.Sum("email", v)
	}
}

// BenchmarkUnwrapDataKey is the cost of getting a tenant's data key from its
// stored form, once per tenant and key version if ciphers are cached.
func BenchmarkUnwrapDataKey(b *testing.B) {
	ctx := context.Background()
	mk := newMasterKey(b)
	w, err := WrapDataKey(ctx, mk, "tenant-a", 1, newDataKey(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnwrapDataKey(ctx, mk, "tenant-a", 1, w); err != nil {
			b.Fatal(err)
		}
	}
}
