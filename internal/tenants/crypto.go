package tenants

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// Crypto is one tenant's field cipher and blind index, ready for use by the
// domain services that store personal data (DATA-1, PRIV-1). It is safe for
// concurrent use.
type Crypto struct {
	tenantID string
	active   int
	ciphers  map[int]*keys.FieldCipher
	index    *keys.BlindIndex
	loaded   time.Time
}

// TenantID is the tenant the ciphers belong to.
func (c *Crypto) TenantID() string { return c.tenantID }

// Seal encrypts a personal field under the tenant's active data key.
func (c *Crypto) Seal(field string, plaintext []byte) ([]byte, error) {
	return c.ciphers[c.active].Seal(field, plaintext)
}

// SealString is Seal for text.
func (c *Crypto) SealString(field, plaintext string) ([]byte, error) {
	return c.Seal(field, []byte(plaintext))
}

// Open decrypts a field sealed under any of the tenant's live key versions.
func (c *Crypto) Open(field string, ciphertext []byte) ([]byte, error) {
	v, err := keys.KeyVersionOf(ciphertext)
	if err != nil {
		return nil, err
	}
	fc, ok := c.ciphers[v]
	if !ok {
		return nil, fmt.Errorf("%w: key version %d of tenant is not available", keys.ErrDecrypt, v)
	}
	return fc.Open(field, ciphertext)
}

// OpenString is Open for text.
func (c *Crypto) OpenString(field string, ciphertext []byte) (string, error) {
	b, err := c.Open(field, ciphertext)
	return string(b), err
}

// Index returns the blind index of a normalised value of a field.
func (c *Crypto) Index(field, normalised string) []byte {
	return c.index.Sum(field, []byte(normalised))
}

// Keyring caches each tenant's Crypto so that the data key is unwrapped once,
// not per request. Entries expire after TTL (and are dropped by Forget when a
// key changes), so a key rotated or destroyed on another node stops being
// used within TTL.
type Keyring struct {
	db     *store.DB
	master keys.MasterKey
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]*Crypto
}

// NewKeyring returns a keyring; ttl <= 0 means 5 minutes.
func NewKeyring(db *store.DB, master keys.MasterKey, ttl time.Duration) *Keyring {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return &Keyring{db: db, master: master, ttl: ttl, now: db.Now, cache: map[string]*Crypto{}}
}

// ErrNoKey is returned for a tenant without a usable data key (unknown
// tenant, or keys destroyed). For destroyed keys the error also wraps
// [ErrShredded].
var ErrNoKey = errors.New("tenant has no usable data key")

// ErrShredded is [keys.ErrShredded]: the tenant's (or a contact's) keys were
// destroyed, so its personal data can no longer be decrypted. The API answers
// it with the stable problem code "shredded", the CLI says so.
var ErrShredded = keys.ErrShredded

// Crypto returns the tenant's ciphers, unwrapping its keys when needed.
func (k *Keyring) Crypto(ctx context.Context, tenantID string) (*Crypto, error) {
	k.mu.Lock()
	c, ok := k.cache[tenantID]
	k.mu.Unlock()
	if ok && k.now().Sub(c.loaded) < k.ttl {
		return c, nil
	}
	c, err := k.load(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	// Drop every expired entry, so that unwrapped keys of tenants no longer
	// in use do not stay in memory beyond the TTL.
	now := k.now()
	for id, e := range k.cache {
		if now.Sub(e.loaded) >= k.ttl {
			delete(k.cache, id)
		}
	}
	k.cache[tenantID] = c
	k.mu.Unlock()
	return c, nil
}

// Forget drops a tenant's cached ciphers (after rotation or destruction).
func (k *Keyring) Forget(tenantID string) {
	k.mu.Lock()
	delete(k.cache, tenantID)
	k.mu.Unlock()
}

type wrappedKey struct {
	version int
	wrapped []byte
}

func (k *Keyring) load(ctx context.Context, tenantID string) (*Crypto, error) {
	var rows []wrappedKey
	destroyed := 0
	err := k.db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rs, err := tx.Query(ctx, `SELECT version, wrapped, state FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`)
		if err != nil {
			return err
		}
		defer func() { _ = rs.Close() }()
		for rs.Next() {
			var w wrappedKey
			var state string
			if err := rs.Scan(&w.version, &w.wrapped, &state); err != nil {
				return err
			}
			if state == "destroyed" {
				destroyed++
				continue
			}
			rows = append(rows, w)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read tenant keys: %w", err)
	}
	if len(rows) == 0 && destroyed > 0 {
		return nil, fmt.Errorf("%w: tenant %q: %w", ErrNoKey, tenantID, ErrShredded)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoKey, tenantID)
	}
	mk := keys.ForTenant(k.master, tenantID)
	c := &Crypto{tenantID: tenantID, ciphers: map[int]*keys.FieldCipher{}, loaded: k.now()}
	for i, w := range rows {
		dk, err := keys.UnwrapDataKey(ctx, mk, tenantID, w.version, w.wrapped)
		if err != nil {
			return nil, fmt.Errorf("unwrap tenant key v%d: %w", w.version, err)
		}
		fc, err := keys.NewFieldCipher(tenantID, w.version, dk)
		if err != nil {
			dk.Destroy()
			return nil, err
		}
		c.ciphers[w.version] = fc
		// The blind index stays on the first key version, so that lookups
		// keep working across data-key rotation.
		if i == 0 {
			if c.index, err = keys.NewBlindIndex(tenantID, dk); err != nil {
				dk.Destroy()
				return nil, err
			}
		}
		dk.Destroy()
		c.active = w.version
	}
	return c, nil
}

// CheckValue returns the key-check value of a secret (DATA-3): 8 hex digits
// of a keyed hash under the tenant's blind-index key, so that an
// administrator can confirm which secret is stored (compare the values)
// without anyone reading it back, and a leaked check value cannot be
// brute-forced without the tenant's key. purpose separates uses
// ("connector.password").
func (c *Crypto) CheckValue(purpose string, secret []byte) string {
	sum := c.index.Sum("kcv/"+purpose, secret)
	return hex.EncodeToString(sum[:4])
}

// ContactKeyVersion is the key version written in fields sealed under a
// per-contact key (the largest version a field ciphertext can hold, never a
// tenant data-key version), so that a reader knows which key to use and a
// tenant key rotation leaves them alone (it re-seals the contact keys
// instead).
const ContactKeyVersion = math.MaxInt32

// contactKeyField is the field name under which a per-contact key is sealed
// with the tenant's cipher.
const contactKeyField = "contact.key"

// ContactCipher seals and opens one contact's personal fields under the
// contact's own key (PRIV-4 erasure by crypto-shredding): deleting the
// contact's sealed key makes those fields unreadable in the store and in
// every backup. Fields sealed under the tenant key (contacts written before
// per-contact keys) still open. Get one from [Crypto.NewContactKey] or
// [Crypto.ContactCipher].
type ContactCipher struct {
	tenant *Crypto
	fc     *keys.FieldCipher // nil: the contact's key is gone (shredded)
}

// NewContactKey makes a new per-contact key: it returns the key sealed with
// the tenant's cipher (store it in contacts.key_enc) and the contact's
// cipher.
func (c *Crypto) NewContactKey() ([]byte, *ContactCipher, error) {
	dk, err := keys.NewDataKey()
	if err != nil {
		return nil, nil, err
	}
	defer dk.Destroy()
	raw, err := keys.ExportDataKey(dk)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := c.Seal(contactKeyField, raw)
	clear(raw)
	if err != nil {
		return nil, nil, err
	}
	fc, err := keys.NewFieldCipher(c.tenantID, ContactKeyVersion, dk)
	if err != nil {
		return nil, nil, err
	}
	return sealed, &ContactCipher{tenant: c, fc: fc}, nil
}

// ContactCipher opens a contact's sealed key (nil when the contact has none:
// written before per-contact keys, or shredded).
func (c *Crypto) ContactCipher(sealedKey []byte) (*ContactCipher, error) {
	if len(sealedKey) == 0 {
		return &ContactCipher{tenant: c}, nil
	}
	raw, err := c.Open(contactKeyField, sealedKey)
	if err != nil {
		return nil, fmt.Errorf("open contact key: %w", err)
	}
	dk, err := keys.ImportDataKey(raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("open contact key: %w", err)
	}
	defer dk.Destroy()
	fc, err := keys.NewFieldCipher(c.tenantID, ContactKeyVersion, dk)
	if err != nil {
		return nil, err
	}
	return &ContactCipher{tenant: c, fc: fc}, nil
}

// HasKey reports whether the contact has its own key.
func (cc *ContactCipher) HasKey() bool { return cc.fc != nil }

// SealString seals a field under the contact's key (under the tenant key if
// the contact has none).
func (cc *ContactCipher) SealString(field, plaintext string) ([]byte, error) {
	if cc.fc == nil {
		return cc.tenant.SealString(field, plaintext)
	}
	return cc.fc.Seal(field, []byte(plaintext))
}

// OpenString opens a field sealed under the contact's key or the tenant key.
// A field sealed under a contact key that is gone fails with [ErrShredded].
func (cc *ContactCipher) OpenString(field string, ciphertext []byte) (string, error) {
	v, err := keys.KeyVersionOf(ciphertext)
	if err != nil {
		return "", err
	}
	if v != ContactKeyVersion {
		return cc.tenant.OpenString(field, ciphertext)
	}
	if cc.fc == nil {
		return "", fmt.Errorf("contact field %s: %w", field, ErrShredded)
	}
	b, err := cc.fc.Open(field, ciphertext)
	return string(b), err
}

// Format prints "tenants.Crypto(<tenant>)" for every verb, never the ciphers'
// keys.
func (c *Crypto) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("tenants.Crypto(" + c.tenantID + ")"))
}

// Format prints "tenants.ContactCipher(REDACTED)" for every verb.
func (cc *ContactCipher) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("tenants.ContactCipher(REDACTED)"))
}
