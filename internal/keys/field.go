package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MaxFieldSize is the largest plaintext a [FieldCipher] seals: 16 MiB.
// Open refuses longer ciphertexts without decrypting them.
const MaxFieldSize = 16 << 20

// Field ciphertext: version || uint32 key version || nonce || ciphertext || tag.
const (
	fieldVersion1   = 0x01
	fieldHeaderSize = 1 + 4
	fieldOverhead   = fieldHeaderSize + gcmNonceSize + gcmTagSize
	fieldInfo       = "relais/field/v1"
)

// FieldCipher encrypts a tenant's personal fields with AES-256-GCM under a
// subkey derived from the tenant's data key. A ciphertext opens only with the
// same data key, tenant ID, key version and field name: moved to another
// tenant's row or another column, it fails with [ErrDecrypt]. Create one with
// [NewFieldCipher]; it is safe for concurrent use.
type FieldCipher struct {
	aead       cipher.AEAD // from cipher.NewGCMWithRandomNonce: Seal prepends the nonce
	header     [fieldHeaderSize]byte
	keyVersion int
	tenantID   string
	adPrefix   []byte // header || lp(tenantID); read only
}

// NewFieldCipher returns the field cipher of tenantID for data key dk, whose
// version keyVersion (from 1) is written in every ciphertext. dk may be
// destroyed afterwards: the cipher keeps its own subkey.
func NewFieldCipher(tenantID string, keyVersion int, dk *DataKey) (*FieldCipher, error) {
	if err := checkTenant(tenantID); err != nil {
		return nil, fmt.Errorf("keys: new field cipher: %w", err)
	}
	if err := checkVersion(keyVersion); err != nil {
		return nil, fmt.Errorf("keys: new field cipher for tenant %q: %w", tenantID, err)
	}
	subkey, err := deriveSubkey(dk, fieldInfo)
	if err != nil {
		return nil, fmt.Errorf("keys: new field cipher for tenant %q version %d: %w", tenantID, keyVersion, err)
	}
	defer clear(subkey)
	block, err := aes.NewCipher(subkey)
	if err != nil {
		return nil, fmt.Errorf("keys: new field cipher for tenant %q version %d: %w", tenantID, keyVersion, err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("keys: new field cipher for tenant %q version %d: %w", tenantID, keyVersion, err)
	}
	c := &FieldCipher{aead: aead, keyVersion: keyVersion, tenantID: tenantID}
	c.header[0] = fieldVersion1
	binary.BigEndian.PutUint32(c.header[1:], uint32(keyVersion)) // #nosec G115 -- checkVersion above keeps keyVersion in [1, math.MaxInt32]
	c.adPrefix = appendLP(append([]byte(nil), c.header[:]...), tenantID)
	return c, nil
}

// deriveSubkey derives a 32-byte subkey from dk with HKDF-SHA256, no salt
// (the data key is uniformly random) and the given info.
func deriveSubkey(dk *DataKey, info string) ([]byte, error) {
	key, err := dk.bytes()
	if err != nil {
		return nil, err
	}
	subkey, err := hkdf.Key(sha256.New, key, nil, info, keySize)
	if err != nil {
		return nil, fmt.Errorf("derive subkey: %w", err)
	}
	return subkey, nil
}

// ad returns the GCM additional data for field: header || lp(tenantID) ||
// lp(field). The header, with the key version, is in c.adPrefix.
func (c *FieldCipher) ad(field string) []byte {
	ad := make([]byte, 0, len(c.adPrefix)+8+len(field))
	ad = append(ad, c.adPrefix...)
	return appendLP(ad, field)
}

// ready reports an error for a FieldCipher not made by NewFieldCipher.
func (c *FieldCipher) ready() error {
	if c == nil || c.aead == nil {
		return errors.New("keys: FieldCipher not initialised; use NewFieldCipher")
	}
	return nil
}

// Seal encrypts plaintext, at most [MaxFieldSize] bytes, as the value of
// field. The output is 33 bytes longer than plaintext and differs at every
// call, even for the same plaintext.
func (c *FieldCipher) Seal(field string, plaintext []byte) ([]byte, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	if len(plaintext) > MaxFieldSize {
		return nil, fmt.Errorf("keys: seal field %q of tenant %q: %d bytes, at most %d", field, c.tenantID, len(plaintext), MaxFieldSize)
	}
	out := make([]byte, 0, fieldOverhead+len(plaintext))
	out = append(out, c.header[:]...)
	return c.aead.Seal(out, nil, plaintext, c.ad(field)), nil // #nosec G407 -- c.aead is from cipher.NewGCMWithRandomNonce: it draws a random nonce per Seal and requires a nil nonce argument
}

// Open decrypts a ciphertext made by Seal for the same field. It fails with
// an error wrapping [ErrDecrypt] if the ciphertext was sealed under another
// data key or key version, for another tenant or field, or was altered, and
// with one wrapping [ErrFormat] if it is malformed (truncated, longer than
// any Seal output, or of an unknown version).
func (c *FieldCipher) Open(field string, ciphertext []byte) ([]byte, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	v, err := KeyVersionOf(ciphertext)
	if err != nil {
		return nil, fmt.Errorf("keys: open field %q of tenant %q: %w", field, c.tenantID, err)
	}
	if v != c.keyVersion {
		return nil, fmt.Errorf("keys: open field %q of tenant %q: sealed under key version %d, this cipher has version %d (see KeyVersionOf): %w",
			field, c.tenantID, v, c.keyVersion, ErrDecrypt)
	}
	pt, err := c.aead.Open(nil, nil, ciphertext[fieldHeaderSize:], c.ad(field))
	if err != nil {
		return nil, fmt.Errorf("keys: open field %q of tenant %q (wrong key, tenant or field, or altered): %w",
			field, c.tenantID, ErrDecrypt)
	}
	return pt, nil
}

// KeyVersionOf returns the data key version written in a field ciphertext
// made by [FieldCipher.Seal], so that the matching cipher can be chosen. It
// reads the header and checks the length only; it authenticates nothing, Open
// does. It fails with an error wrapping [ErrFormat] if the ciphertext is
// shorter than the header, nonce and tag, longer than any Seal output, of an
// unknown version, or holds a key version of 0 or above math.MaxInt32.
func KeyVersionOf(ciphertext []byte) (int, error) {
	switch {
	case len(ciphertext) < fieldOverhead:
		return 0, fmt.Errorf("field ciphertext of %d bytes, at least %d expected: %w", len(ciphertext), fieldOverhead, ErrFormat)
	case len(ciphertext) > fieldOverhead+MaxFieldSize:
		return 0, fmt.Errorf("field ciphertext of %d bytes, at most %d expected: %w", len(ciphertext), fieldOverhead+MaxFieldSize, ErrFormat)
	case ciphertext[0] != fieldVersion1:
		return 0, fmt.Errorf("field ciphertext of unknown format version %d: %w", ciphertext[0], ErrFormat)
	}
	v := binary.BigEndian.Uint32(ciphertext[1:fieldHeaderSize])
	if v == 0 || v > math.MaxInt32 {
		return 0, fmt.Errorf("field ciphertext with invalid key version %d: %w", v, ErrFormat)
	}
	return int(v), nil
}
