package keys

import (
	"errors"
	"path/filepath"
	"testing"
)

// newMasterKey creates a master key file in a fresh temporary directory.
func newMasterKey(t testing.TB) *FileMasterKey {
	t.Helper()
	mk, err := LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatalf("LoadOrCreateFileMasterKey: %v", err)
	}
	return mk
}

func newDataKey(t testing.TB) *DataKey {
	t.Helper()
	dk, err := NewDataKey()
	if err != nil {
		t.Fatalf("NewDataKey: %v", err)
	}
	return dk
}

// dataKeyFrom builds a DataKey from fixed bytes, for test vectors.
func dataKeyFrom(b []byte) *DataKey {
	k := new([keySize]byte)
	copy(k[:], b)
	return &DataKey{key: k}
}

func newFieldCipher(t testing.TB, tenantID string, version int, dk *DataKey) *FieldCipher {
	t.Helper()
	c, err := NewFieldCipher(tenantID, version, dk)
	if err != nil {
		t.Fatalf("NewFieldCipher(%q, %d): %v", tenantID, version, err)
	}
	return c
}

func newBlindIndex(t testing.TB, tenantID string, dk *DataKey) *BlindIndex {
	t.Helper()
	b, err := NewBlindIndex(tenantID, dk)
	if err != nil {
		t.Fatalf("NewBlindIndex(%q): %v", tenantID, err)
	}
	return b
}

// isDataError reports whether err is one of the two errors that hostile or
// damaged input may cause.
func isDataError(err error) bool {
	return errors.Is(err, ErrDecrypt) || errors.Is(err, ErrFormat)
}

// flipped returns a copy of b with bit i flipped.
func flipped(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i/8] ^= 1 << (i % 8)
	return c
}

// seq returns n bytes 0, 1, 2, ...
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}
