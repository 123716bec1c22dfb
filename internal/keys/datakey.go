package keys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
)

// DataKey is a tenant's 256-bit data key, unwrapped, in memory only. Get one
// from [NewDataKey] or [UnwrapDataKey]; store only the output of
// [WrapDataKey]. It formats and logs as "keys.DataKey(REDACTED)". A zero or
// destroyed DataKey is refused by every function that takes one.
type DataKey struct {
	key *[keySize]byte // nil when zero or destroyed
}

// dataKeyAADPrefix starts the aad that binds a wrapped data key to its tenant
// and version.
const dataKeyAADPrefix = "relais/tenant-data-key/v1"

// maxWrappedDataKey bounds the wrapped data keys handed to a [MasterKey], so
// that no provider sees absurd input. Any sane wrapping of 32 bytes is far
// smaller.
const maxWrappedDataKey = 4096

// NewDataKey returns a new data key of 32 bytes from [crypto/rand].
func NewDataKey() (*DataKey, error) {
	k := new([keySize]byte)
	rand.Read(k[:]) // never fails: crypto/rand.Read crashes the program instead
	return &DataKey{key: k}, nil
}

// bytes returns the key bytes, or an error if dk is nil, zero or destroyed.
func (dk *DataKey) bytes() ([]byte, error) {
	if dk == nil || dk.key == nil {
		return nil, errors.New("data key is nil, zero or destroyed")
	}
	return dk.key[:], nil
}

// Destroy zeroes the key bytes and makes dk unusable. It is best effort: the
// Go runtime may have left copies, and ciphers already derived from dk keep
// their own subkeys. Destroy must not run concurrently with other uses of dk.
func (dk *DataKey) Destroy() {
	if dk == nil || dk.key == nil {
		return
	}
	clear(dk.key[:])
	dk.key = nil
}

// String returns "keys.DataKey(REDACTED)", never the key.
func (dk *DataKey) String() string { return "keys.DataKey(REDACTED)" }

// GoString is String, so that %#v prints no key either.
func (dk *DataKey) GoString() string { return dk.String() }

// Format prints String for every verb, so that no verb prints the key.
func (dk *DataKey) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(dk.String())) }

// LogValue makes [log/slog] record "keys.DataKey(REDACTED)", never the key.
func (dk *DataKey) LogValue() slog.Value { return slog.StringValue(dk.String()) }

// dataKeyAAD binds a wrapped data key to its tenant and version:
// "relais/tenant-data-key/v1" || lp(tenantID) || uint32(version).
func dataKeyAAD(tenantID string, version int) []byte {
	aad := make([]byte, 0, len(dataKeyAADPrefix)+8+len(tenantID)+4)
	aad = append(aad, dataKeyAADPrefix...)
	aad = appendLP(aad, tenantID)
	return binary.BigEndian.AppendUint32(aad, uint32(version)) // #nosec G115 -- both callers run checkWrapArgs first, whose checkVersion keeps version in [1, math.MaxInt32]
}

// WrapDataKey wraps dk with mk for the given tenant and key version (from 1).
// The result is what is stored, beside mk.ID() and the version; it unwraps
// only under the same master key, tenant ID and version.
func WrapDataKey(ctx context.Context, mk MasterKey, tenantID string, version int, dk *DataKey) ([]byte, error) {
	if err := checkWrapArgs(mk, tenantID, version); err != nil {
		return nil, fmt.Errorf("keys: wrap data key: %w", err)
	}
	key, err := dk.bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: wrap data key of tenant %q version %d: %w", tenantID, version, err)
	}
	wrapped, err := mk.Wrap(ctx, key, dataKeyAAD(tenantID, version))
	if err != nil {
		return nil, fmt.Errorf("keys: wrap data key of tenant %q version %d: %w", tenantID, version, err)
	}
	return wrapped, nil
}

// UnwrapDataKey unwraps a data key made by [WrapDataKey]. It fails with an
// error wrapping [ErrDecrypt] if wrapped was made under another master key,
// for another tenant or version, or was altered, and with one wrapping
// [ErrFormat] if it is malformed.
func UnwrapDataKey(ctx context.Context, mk MasterKey, tenantID string, version int, wrapped []byte) (*DataKey, error) {
	if err := checkWrapArgs(mk, tenantID, version); err != nil {
		return nil, fmt.Errorf("keys: unwrap data key: %w", err)
	}
	if len(wrapped) > maxWrappedDataKey {
		return nil, fmt.Errorf("keys: unwrap data key of tenant %q version %d: %d bytes, at most %d expected: %w",
			tenantID, version, len(wrapped), maxWrappedDataKey, ErrFormat)
	}
	pt, err := mk.Unwrap(ctx, wrapped, dataKeyAAD(tenantID, version))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap data key of tenant %q version %d: %w", tenantID, version, err)
	}
	defer clear(pt)
	if len(pt) != keySize {
		return nil, fmt.Errorf("keys: unwrap data key of tenant %q version %d: unwrapped %d bytes, want %d: %w",
			tenantID, version, len(pt), keySize, ErrFormat)
	}
	k := new([keySize]byte)
	copy(k[:], pt)
	return &DataKey{key: k}, nil
}

func checkWrapArgs(mk MasterKey, tenantID string, version int) error {
	if mk == nil {
		return errors.New("nil master key")
	}
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	return checkVersion(version)
}

// ExportDataKey returns a copy of dk's 32 bytes, to be sealed at once by a
// key that protects it (per-contact keys are sealed with the tenant's field
// cipher). The caller must clear the copy.
func ExportDataKey(dk *DataKey) ([]byte, error) {
	b, err := dk.bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: export data key: %w", err)
	}
	return append([]byte(nil), b...), nil
}

// ImportDataKey makes a DataKey of 32 bytes from [ExportDataKey] (once
// unsealed). The caller keeps and should clear raw.
func ImportDataKey(raw []byte) (*DataKey, error) {
	if len(raw) != keySize {
		return nil, fmt.Errorf("keys: import data key: %d bytes, want %d: %w", len(raw), keySize, ErrFormat)
	}
	k := new([keySize]byte)
	copy(k[:], raw)
	return &DataKey{key: k}, nil
}
