package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrDecrypt reports that well-formed input failed authentication: it was
// sealed or wrapped under another key, for another tenant, field or key
// version, or it was altered.
var ErrDecrypt = errors.New("message authentication failed")

// ErrFormat reports malformed input: too short, too long, or of an unknown
// format version.
var ErrFormat = errors.New("malformed input")

// keySize is the size of every key in this package: master keys, data keys
// and the subkeys derived from them.
const keySize = 32

// appendLP appends the 8-byte big-endian length of s and then s, so that a
// concatenation of such fields is unambiguous whatever their contents.
func appendLP(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(s)))
	return append(dst, s...)
}

// checkVersion validates a key version: from 1 to math.MaxInt32, so that it
// fits the uint32 of the formats and an int on every platform.
func checkVersion(version int) error {
	if version < 1 || version > math.MaxInt32 {
		return fmt.Errorf("key version %d out of range [1, %d]", version, math.MaxInt32)
	}
	return nil
}

// checkTenant validates a tenant ID.
func checkTenant(tenantID string) error {
	if tenantID == "" {
		return errors.New("empty tenant ID")
	}
	return nil
}
