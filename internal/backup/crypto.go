package backup

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/tenants"
)

// Errors.
var (
	// ErrAuth: an object failed authentication (altered, truncated, or
	// another key).
	ErrAuth = errors.New("backup object failed authentication")
	// ErrShredded: the tenant's keys were destroyed; its backups must not
	// come back.
	ErrShredded = errors.New("the tenant was shredded: its backups cannot be restored")
)

// segmentSize is the streaming AEAD's ciphertext segment: 1 MiB.
const segmentSize = 1 << 20

// setKeyField is the field name under which a set key is sealed by the
// tenant's field cipher: binding the set id.
func setKeyField(setID string) string { return "backup/set-key/" + setID }

// setKeys are the keys derived from a set's random key.
type setKeys struct {
	stream  *subtle.AESGCMHKDF // encrypts chunks, manifests and snapshots
	address []byte             // HMAC key naming chunks
}

func deriveSetKeys(raw []byte) (*setKeys, error) {
	enc, err := hkdf.Key(sha256.New, raw, nil, "relais/backup/stream/v1", 32)
	if err != nil {
		return nil, err
	}
	addr, err := hkdf.Key(sha256.New, raw, nil, "relais/backup/address/v1", 32)
	if err != nil {
		return nil, err
	}
	s, err := subtle.NewAESGCMHKDF(enc, "SHA256", 32, segmentSize, 0)
	if err != nil {
		return nil, fmt.Errorf("backup: streaming AEAD: %w", err)
	}
	return &setKeys{stream: s, address: addr}, nil
}

// newSetKey draws a set key and seals it under the tenant's data key.
func newSetKey(c *tenants.Crypto, setID string) (*setKeys, []byte, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	defer clear(raw)
	sealed, err := c.Seal(setKeyField(setID), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: seal the set key: %w", err)
	}
	k, err := deriveSetKeys(raw)
	return k, sealed, err
}

// openSetKey opens a set key with the tenant data keys carried in the
// header, unwrapped by the master key.
func openSetKey(ctx context.Context, master keys.MasterKey, h Header) (*setKeys, error) {
	v, err := keys.KeyVersionOf(h.SetKey)
	if err != nil {
		return nil, fmt.Errorf("backup: set key of %s: %w", h.SetID, err)
	}
	for _, wk := range h.TenantKeys {
		if wk.Version != v {
			continue
		}
		dk, err := keys.UnwrapDataKey(ctx, master, h.TenantID, wk.Version, wk.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("backup: unwrap the tenant key of set %s (is this the master key that wrapped it?): %w", h.SetID, err)
		}
		fc, err := keys.NewFieldCipher(h.TenantID, wk.Version, dk)
		dk.Destroy()
		if err != nil {
			return nil, err
		}
		raw, err := fc.Open(setKeyField(h.SetID), h.SetKey)
		if err != nil {
			return nil, fmt.Errorf("backup: open the set key of %s: %w", h.SetID, ErrAuth)
		}
		defer clear(raw)
		return deriveSetKeys(raw)
	}
	return nil, fmt.Errorf("backup: the tenant key version %d that sealed set %s is not in its manifest", v, h.SetID)
}

// chunkID names a chunk by the HMAC of its plaintext under the set's
// address key: content-addressed without revealing the content's hash.
func (k *setKeys) chunkID(plain []byte) string {
	m := hmac.New(sha256.New, k.address)
	m.Write(plain)
	return hex.EncodeToString(m.Sum(nil))
}

func chunkAAD(setID, id string) []byte {
	return []byte("relais-backup-chunk/v1\x00" + setID + "\x00" + id)
}

func manifestAAD(header []byte) []byte {
	return append([]byte("relais-backup-manifest/v1\x00"), header...)
}

// seal encrypts plain with the streaming AEAD.
func (k *setKeys) seal(plain, aad []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plain) + len(plain)/segmentSize*16 + 64)
	w, err := k.stream.NewEncryptingWriter(&buf, aad)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// open decrypts and authenticates every segment of ct.
func (k *setKeys) open(ct io.Reader, aad []byte) ([]byte, error) {
	r, err := k.stream.NewDecryptingReader(ct, aad)
	if err != nil {
		return nil, ErrAuth
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}
