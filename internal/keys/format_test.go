package keys

// These tests rebuild each format from the standard library primitives,
// following the package documentation and not the package code, so that the
// code and its documented formats cannot drift apart. The hex vectors pin the
// formats for other implementations and for future versions of this one.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
)

// Vector inputs: data key 00 01 .. 1f, tenant "tenant-a", field "email".
const (
	vecTenant    = "tenant-a"
	vecField     = "email"
	vecPlaintext = "alice@example.com"
	// Field ciphertext of vecPlaintext under key version 1, nonce a0 a1 .. ab.
	vecFieldCiphertext = "0100000001" + "a0a1a2a3a4a5a6a7a8a9aaab" +
		"ef57f95296df11f7a6ee9fdd0fe0462e3acf1657d4f1de24c3d71763ad338459e9"
	// Blind index of vecPlaintext.
	vecBlindIndexHex = "ca3afa52a00d27bab59838d7a238335b3e3f7c1865b927fcedfb1c38909de73a"
)

// specAD is the field additional data, written out from the documentation:
// 0x01 || uint32(keyVersion) || lp(tenantID) || lp(field), lp being an
// 8-byte big-endian length then the bytes.
func specAD(keyVersion uint32, tenantID, field string) []byte {
	var ad []byte
	ad = append(ad, 0x01, byte(keyVersion>>24), byte(keyVersion>>16), byte(keyVersion>>8), byte(keyVersion))
	ad = append(ad, 0, 0, 0, 0, 0, 0, 0, byte(len(tenantID)))
	ad = append(ad, tenantID...)
	ad = append(ad, 0, 0, 0, 0, 0, 0, 0, byte(len(field)))
	ad = append(ad, field...)
	return ad
}

func specGCM(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

func specSubkey(t *testing.T, dk []byte, info string) []byte {
	t.Helper()
	k, err := hkdf.Key(sha256.New, dk, nil, info, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFieldFormat(t *testing.T) {
	dkBytes := seq(32)
	c := newFieldCipher(t, vecTenant, 1, dataKeyFrom(dkBytes))
	aead := specGCM(t, specSubkey(t, dkBytes, "relais/field/v1"))
	ad := specAD(1, vecTenant, vecField)

	// Built by hand, opened by the package.
	nonce, _ := hex.DecodeString("a0a1a2a3a4a5a6a7a8a9aaab")
	built := append([]byte{0x01, 0, 0, 0, 1}, nonce...)
	built = aead.Seal(built, nonce, []byte(vecPlaintext), ad)
	if got := hex.EncodeToString(built); got != vecFieldCiphertext {
		t.Errorf("vector changed:\n got %s\nwant %s", got, vecFieldCiphertext)
	}
	pt, err := c.Open(vecField, built)
	if err != nil || string(pt) != vecPlaintext {
		t.Fatalf("Open of the hand-built ciphertext = %q, %v", pt, err)
	}

	// Sealed by the package, opened by hand.
	ct, err := c.Seal(vecField, []byte(vecPlaintext))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ct[:5], []byte{0x01, 0, 0, 0, 1}) {
		t.Fatalf("header = %x, want 0100000001", ct[:5])
	}
	pt, err = aead.Open(nil, ct[5:17], ct[17:], ad)
	if err != nil || string(pt) != vecPlaintext {
		t.Fatalf("hand Open of Seal output = %q, %v", pt, err)
	}
}

func TestBlindIndexFormat(t *testing.T) {
	dkBytes := seq(32)
	b := newBlindIndex(t, vecTenant, dataKeyFrom(dkBytes))
	m := hmac.New(sha256.New, specSubkey(t, dkBytes, "relais/blind-index/v1"))
	m.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(vecTenant))})
	m.Write([]byte(vecTenant))
	m.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(vecField))})
	m.Write([]byte(vecField))
	m.Write([]byte(vecPlaintext))
	want := m.Sum(nil)
	got := b.Sum(vecField, []byte(vecPlaintext))
	if !bytes.Equal(got, want) {
		t.Fatalf("Sum = %x, documented construction gives %x", got, want)
	}
	if hex.EncodeToString(got) != vecBlindIndexHex {
		t.Errorf("vector changed:\n got %x\nwant %s", got, vecBlindIndexHex)
	}
}

// TestWrapFormat checks a file master key's wrap and a tenant data key's
// binding against the documentation, from the key file's bytes.
func TestWrapFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "master.key")
	mk, err := LoadOrCreateFileMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	aead := specGCM(t, keyFromFile(t, path))
	dk := dataKeyFrom(seq(32))
	w, err := WrapDataKey(ctx, mk, vecTenant, 3, dk)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1+12+32+16 || w[0] != 0x01 {
		t.Fatalf("wrapped data key is %d bytes starting %#x; want 61 starting 0x01", len(w), w[0])
	}
	aad := []byte("relais/tenant-data-key/v1")
	aad = append(aad, 0, 0, 0, 0, 0, 0, 0, byte(len(vecTenant)))
	aad = append(aad, vecTenant...)
	aad = append(aad, 0, 0, 0, 3)
	pt, err := aead.Open(nil, w[1:13], w[13:], append([]byte{0x01}, aad...))
	if err != nil || !bytes.Equal(pt, seq(32)) {
		t.Fatalf("hand unwrap = %x, %v", pt, err)
	}

	// And the other way: wrapped by hand, unwrapped by the package.
	nonce := seq(12)
	built := aead.Seal(append([]byte{0x01}, nonce...), nonce, seq(32), append([]byte{0x01}, aad...))
	got, err := UnwrapDataKey(ctx, mk, vecTenant, 3, built)
	if err != nil || !bytes.Equal(got.key[:], seq(32)) {
		t.Fatalf("UnwrapDataKey of the hand-wrapped key: %v", err)
	}
	// Without the version byte in the additional data, it must fail.
	unbound := aead.Seal(append([]byte{0x01}, nonce...), nonce, seq(32), aad)
	if _, err := UnwrapDataKey(ctx, mk, vecTenant, 3, unbound); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("UnwrapDataKey with the header left out of the additional data: %v, want ErrDecrypt", err)
	}
}
