package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"
)

// blindIndexSize is the length of a blind index: a full HMAC-SHA256.
const blindIndexSize = sha256.Size

const blindIndexInfo = "relais/blind-index/v1"

// BlindIndex computes keyed blind indexes of a tenant's fields, so that the
// store can answer equality lookups on encrypted values without seeing them.
// Create one with [NewBlindIndex]; it is safe for concurrent use.
type BlindIndex struct {
	key      []byte // HKDF subkey of the data key; read only
	tenantLP []byte // lp(tenantID); read only
	// macs holds HMAC-SHA256 states keyed with key, reset for each Sum: a
	// contacts import computes two blind indexes per line, and a new HMAC
	// each time was a tenth of the workers' CPU, in allocations.
	macs sync.Pool
}

// NewBlindIndex returns the blind index of tenantID for data key dk. dk may
// be destroyed afterwards: the index keeps its own subkey.
func NewBlindIndex(tenantID string, dk *DataKey) (*BlindIndex, error) {
	if err := checkTenant(tenantID); err != nil {
		return nil, fmt.Errorf("keys: new blind index: %w", err)
	}
	subkey, err := deriveSubkey(dk, blindIndexInfo)
	if err != nil {
		return nil, fmt.Errorf("keys: new blind index for tenant %q: %w", tenantID, err)
	}
	return &BlindIndex{key: subkey, tenantLP: appendLP(nil, tenantID)}, nil
}

// Sum returns the 32-byte blind index of value in field: HMAC-SHA256 over
// the tenant ID, the field name and value. It is deterministic for one data
// key, tenant and field, and unrelated across tenants and fields. The caller
// normalises value first (for example, lower-cases an email address), since
// only identical bytes match. Sum panics on a BlindIndex not made by
// NewBlindIndex, which would otherwise compute an index with no key.
func (b *BlindIndex) Sum(field string, value []byte) []byte {
	if b == nil || len(b.key) != keySize {
		panic("keys: BlindIndex not initialised; use NewBlindIndex")
	}
	m, _ := b.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, b.key)
	}
	defer b.macs.Put(m)
	m.Reset()
	m.Write(b.tenantLP)
	m.Write(appendLP(make([]byte, 0, 8+len(field)), field))
	m.Write(value)
	return m.Sum(make([]byte, 0, blindIndexSize))
}

// Equal reports in constant time whether a and b are the same blind index.
// It is false unless both are 32 bytes long, so that two missing indexes are
// never equal.
func Equal(a, b []byte) bool {
	if len(a) != blindIndexSize || len(b) != blindIndexSize {
		return false
	}
	return hmac.Equal(a, b)
}
