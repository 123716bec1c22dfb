package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// MasterKey wraps and unwraps tenant data keys. The file implementation is
// [FileMasterKey]; vault and PKCS#11 implementations plug in through the same
// interface.
//
// Implementations must authenticate both the wrapped bytes and aad, so that
// Unwrap with another aad fails; must report failed authentication with an
// error wrapping [ErrDecrypt] and malformed input with one wrapping
// [ErrFormat]; must never put key material in an error; and must be safe for
// concurrent use.
type MasterKey interface {
	// ID identifies the master key version (for a file key,
	// "file:v1:<8 hex digits of SHA-256 of the key>"). It is stored beside
	// wrapped keys so that the right master key can be found after rotation.
	ID() string
	// Wrap encrypts plaintext, a key, bound to aad.
	Wrap(ctx context.Context, plaintext []byte, aad []byte) ([]byte, error)
	// Unwrap decrypts the output of Wrap given the same aad.
	Unwrap(ctx context.Context, wrapped []byte, aad []byte) ([]byte, error)
}

// Wrapped format of a FileMasterKey: version || nonce || ciphertext || tag.
const (
	wrapVersion1 = 0x01
	gcmNonceSize = 12
	gcmTagSize   = 16
	// maxWrapPlaintext bounds what a master key wraps: keys, not data. It
	// leaves room for any private key Relais may hold (RSA-4096 in PKCS#8 is
	// about 2.4 KiB).
	maxWrapPlaintext = 4096
	minWrapped       = 1 + gcmNonceSize + gcmTagSize
	maxWrapped       = minWrapped + maxWrapPlaintext
)

// FileMasterKey is a [MasterKey] read from a file by [LoadFileMasterKey] or
// [LoadOrCreateFileMasterKey]. It wraps with AES-256-GCM under a random
// 96-bit nonce; the output is a version byte (1), the nonce, and the
// ciphertext with its tag, and the version byte and the caller's aad are
// authenticated. It is safe for concurrent use.
type FileMasterKey struct {
	id   string
	aead cipher.AEAD // from cipher.NewGCMWithRandomNonce: Seal prepends the nonce
}

// newFileMasterKey builds a FileMasterKey from 32 key bytes. The caller keeps
// ownership of key and should clear it.
func newFileMasterKey(key []byte) (*FileMasterKey, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("master key cipher: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("master key cipher: %w", err)
	}
	sum := sha256.Sum256(key)
	return &FileMasterKey{
		id:   "file:v1:" + hex.EncodeToString(sum[:4]),
		aead: aead,
	}, nil
}

// ID returns "file:v1:" followed by the first 8 hex digits of the SHA-256 of
// the key bytes.
func (k *FileMasterKey) ID() string { return k.id }

// Wrap encrypts plaintext (at most 4 KiB: a master key wraps keys, not data)
// and binds the result to aad.
func (k *FileMasterKey) Wrap(ctx context.Context, plaintext []byte, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keys: wrap with master key %s: %w", k.id, err)
	}
	if len(plaintext) > maxWrapPlaintext {
		return nil, fmt.Errorf("keys: wrap with master key %s: %d bytes to wrap, at most %d", k.id, len(plaintext), maxWrapPlaintext)
	}
	header := []byte{wrapVersion1}
	out := make([]byte, 0, len(plaintext)+minWrapped)
	out = append(out, header...)
	return k.aead.Seal(out, nil, plaintext, wrapAD(header, aad)), nil // #nosec G407 -- k.aead is from cipher.NewGCMWithRandomNonce: it draws a random nonce per Seal and requires a nil nonce argument
}

// Unwrap decrypts the output of Wrap. It fails with an error wrapping
// [ErrDecrypt] when wrapped was made by another key or with another aad, or
// was altered, and with one wrapping [ErrFormat] when wrapped is malformed.
func (k *FileMasterKey) Unwrap(ctx context.Context, wrapped []byte, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keys: unwrap with master key %s: %w", k.id, err)
	}
	switch {
	case len(wrapped) < minWrapped:
		return nil, fmt.Errorf("keys: unwrap with master key %s: %d bytes, at least %d expected: %w", k.id, len(wrapped), minWrapped, ErrFormat)
	case len(wrapped) > maxWrapped:
		return nil, fmt.Errorf("keys: unwrap with master key %s: %d bytes, at most %d expected: %w", k.id, len(wrapped), maxWrapped, ErrFormat)
	case wrapped[0] != wrapVersion1:
		return nil, fmt.Errorf("keys: unwrap with master key %s: unknown format version %d: %w", k.id, wrapped[0], ErrFormat)
	}
	pt, err := k.aead.Open(nil, nil, wrapped[1:], wrapAD(wrapped[:1], aad))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap with master key %s (wrong master key, wrong binding, or altered): %w", k.id, ErrDecrypt)
	}
	return pt, nil
}

// wrapAD is the GCM additional data of a wrap: the header, then aad.
func wrapAD(header, aad []byte) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	ad = append(ad, header...)
	return append(ad, aad...)
}

// String returns a description with the key ID and no key material.
func (k *FileMasterKey) String() string { return "keys.FileMasterKey(" + k.id + ")" }

// GoString is String, so that %#v prints no key material either.
func (k *FileMasterKey) GoString() string { return k.String() }

// LogValue makes [log/slog] record only the key ID.
func (k *FileMasterKey) LogValue() slog.Value { return slog.StringValue(k.String()) }
