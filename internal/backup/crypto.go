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

// addressKeyField seals the tenant's chunk-address key.
const addressKeyField = "backup/address-key"

// setKeys is a set's stream cipher (from its random key).
type setKeys struct {
	stream *subtle.AESGCMHKDF // encrypts chunks, manifests and snapshots
}

func deriveSetKeys(raw []byte) (*setKeys, error) {
	enc, err := hkdf.Key(sha256.New, raw, nil, "relais/backup/stream/v1", 32)
	if err != nil {
		return nil, err
	}
	s, err := subtle.NewAESGCMHKDF(enc, "SHA256", 32, segmentSize, 0)
	if err != nil {
		return nil, fmt.Errorf("backup: streaming AEAD: %w", err)
	}
	return &setKeys{stream: s}, nil
}

// newSealedKey draws a 256-bit key and seals it under the tenant's data
// key as field.
func newSealedKey(c *tenants.Crypto, field string) ([]byte, []byte, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	sealed, err := c.Seal(field, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: seal a backup key: %w", err)
	}
	return raw, sealed, nil
}

// openSealed opens a key sealed by the tenant's field cipher, with the
// tenant data keys carried in the header, unwrapped by the master key.
func openSealed(ctx context.Context, master keys.MasterKey, h Header, field string, sealed []byte) ([]byte, error) {
	v, err := keys.KeyVersionOf(sealed)
	if err != nil {
		return nil, fmt.Errorf("backup: key of point %s: %w", h.PointID, err)
	}
	for _, wk := range h.TenantKeys {
		if wk.Version != v {
			continue
		}
		dk, err := keys.UnwrapDataKey(ctx, master, h.TenantID, wk.Version, wk.Wrapped)
		if err != nil {
			return nil, fmt.Errorf("backup: unwrap the tenant key of point %s (is this the master key that wrapped it?): %w", h.PointID, err)
		}
		fc, err := keys.NewFieldCipher(h.TenantID, wk.Version, dk)
		dk.Destroy()
		if err != nil {
			return nil, err
		}
		raw, err := fc.Open(field, sealed)
		if err != nil {
			return nil, fmt.Errorf("backup: open a key of point %s: %w", h.PointID, ErrAuth)
		}
		return raw, nil
	}
	return nil, fmt.Errorf("backup: the tenant key version %d that sealed point %s is not in its manifest", v, h.PointID)
}

// pointKeys are the keys a point needs: its own set's, those of the
// earlier sets whose chunks it reuses, and the tenant's address key.
type pointKeys struct {
	set     string
	sets    map[string]*setKeys
	address []byte
}

func openPointKeys(ctx context.Context, master keys.MasterKey, h Header) (*pointKeys, error) {
	pk := &pointKeys{set: h.SetID, sets: map[string]*setKeys{}}
	add := func(set string, sealed []byte) error {
		raw, err := openSealed(ctx, master, h, setKeyField(set), sealed)
		if err != nil {
			return err
		}
		defer clear(raw)
		k, err := deriveSetKeys(raw)
		pk.sets[set] = k
		return err
	}
	if err := add(h.SetID, h.SetKey); err != nil {
		return nil, err
	}
	for set, sealed := range h.OtherSetKeys {
		if err := add(set, sealed); err != nil {
			return nil, err
		}
	}
	var err error
	pk.address, err = openSealed(ctx, master, h, addressKeyField, h.AddrKey)
	return pk, err
}

// own is the point's set cipher.
func (k *pointKeys) own() *setKeys { return k.sets[k.set] }

// of is the cipher of the set that holds chunk c.
func (k *pointKeys) of(c ChunkRef) (*setKeys, string, error) {
	set := c.Set
	if set == "" {
		set = k.set
	}
	sk, ok := k.sets[set]
	if !ok {
		return nil, set, fmt.Errorf("%w: chunk %s refers to set %s, whose key is not in the manifest", ErrAuth, c.ID, set)
	}
	return sk, set, nil
}

// chunkID names a chunk by the HMAC of its plaintext under the tenant's
// address key: content-addressed (the same chunk has the same name in
// every set, so a set reuses an earlier set's copy) without revealing the
// content's hash.
func (k *pointKeys) chunkID(plain []byte) string {
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
	return k.sealTo(nil, plain, aad)
}

// sealTo is seal writing into dst's storage (reused when large enough).
func (k *setKeys) sealTo(dst, plain, aad []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst[:0])
	buf.Grow(len(plain) + len(plain)/segmentSize*16 + 64)
	w, err := k.stream.NewEncryptingWriter(buf, aad)
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
	return k.openInto(ct, aad, nil)
}

// openInto is open reading the plaintext into buf (its capacity reused
// when large enough; a new buffer otherwise): a restore knows each chunk's
// size and reuses one buffer for all, where io.ReadAll grows a new one
// from 512 bytes for every chunk.
func (k *setKeys) openInto(ct io.Reader, aad []byte, buf []byte) ([]byte, error) {
	r, err := k.stream.NewDecryptingReader(ct, aad)
	if err != nil {
		return nil, ErrAuth
	}
	if buf == nil {
		plain, err := io.ReadAll(r)
		if err != nil {
			return nil, ErrAuth
		}
		return plain, nil
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, ErrAuth
		}
	}
}
