package tenants

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Pseudonymiser turns personal values into keyed tokens for exports and
// analytics (PRIV-2): the same value of the same field gives the same token
// within a tenant, so pseudonymised data sets can still be joined and
// de-duplicated, but a token cannot be reversed nor recomputed without the
// tenant's key, and it differs from the blind index stored in the database,
// so an exported file cannot be matched against a copy of the store. Get one
// from [Crypto.Pseudonymiser]; it is safe for concurrent use.
type Pseudonymiser struct {
	key []byte // read only
}

// pseudonymLabel is the reserved blind-index "field" whose index of the
// empty value is the input keying material of the pseudonym key. No stored
// field is named like it.
const pseudonymLabel = "relais/reserved/pseudonym-key/v1"

// Pseudonymiser returns the tenant's pseudonymiser.
//
// Its key is HKDF-SHA256 (no salt, info "relais/pseudonym/v1", 32 bytes)
// of the tenant's blind index of a reserved label: an HMAC under the
// blind-index subkey, hence a pseudo-random function of the tenant's first
// data key, stable across data-key rotation like the blind index itself,
// and independent of every stored blind index. A later version should derive
// it from the data key directly in internal/keys, with its own HKDF info.
func (c *Crypto) Pseudonymiser() *Pseudonymiser {
	ikm := c.Index(pseudonymLabel, "")
	key, err := hkdf.Key(sha256.New, ikm, nil, "relais/pseudonym/v1", 32)
	if err != nil { // only for an invalid length, which 32 is not
		panic(fmt.Sprintf("tenants: derive pseudonym key: %v", err))
	}
	return &Pseudonymiser{key: key}
}

// Token returns the pseudonym of a normalised value of a field:
// "ps1_" followed by the base64url (no padding) of the first 16 bytes of
// HMAC-SHA256(key, uint64(len(field)) || field || value). The caller
// normalises value first (a lower-case email, an E.164 phone number).
func (p *Pseudonymiser) Token(field, value string) string {
	m := hmac.New(sha256.New, p.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(field)))
	m.Write(n[:])
	m.Write([]byte(field))
	m.Write([]byte(value))
	return "ps1_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Pseudonym is Pseudonymiser().Token(field, value), for a single value; use
// a Pseudonymiser for many.
func (c *Crypto) Pseudonym(field, value string) string {
	return c.Pseudonymiser().Token(field, value)
}
