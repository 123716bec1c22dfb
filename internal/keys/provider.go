package keys

import (
	"context"
	"errors"
	"fmt"
)

// ErrShredded reports a key that was destroyed on purpose (crypto-shredding):
// the data it protected can no longer be decrypted by anyone. Callers show it
// as such ("this tenant's data was shredded"), never as an internal error.
var ErrShredded = errors.New("key destroyed: the data it protected is crypto-shredded")

// A master-key provider is a [MasterKey] (the platform scope, for
// platform-level secrets such as signing keys) that may also implement the
// optional interfaces below, in the style of filippo.io/age's Recipient and
// Identity: small, one concern each, so that a key file, a vault and an HSM
// plug in alike. Providers are chosen in the configuration ([Open]).

// TenantScoper is implemented by providers that hold one master key per
// tenant (Vault transit, PKCS#11), so that destroying that one key shreds
// that tenant, backups included. [ForTenant] uses it.
type TenantScoper interface {
	// ForTenant returns the master key of tenantID. It must not do I/O:
	// the key is created on first Wrap when the provider needs to.
	ForTenant(tenantID string) MasterKey
}

// Rewrapper is implemented by master keys that re-encrypt a wrapped key under
// their current version without the caller seeing the plaintext (Vault's
// rewrap); [Rewrap] falls back to Unwrap then Wrap.
type Rewrapper interface {
	Rewrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
}

// Rotator is implemented by master keys that can make a new version of
// themselves: Wrap uses the new version from then on, and every older version
// still unwraps until it is retired. Rotate returns the new ID().
type Rotator interface {
	Rotate(ctx context.Context) (string, error)
}

// Destroyer is implemented by master keys that can be destroyed for good
// (every version): what they wrapped can then never be unwrapped, in the store
// or in any backup. A provider whose one key serves every scope (the key
// file) does not implement it for tenant scopes.
type Destroyer interface {
	Destroy(ctx context.Context) error
}

// ForTenant returns the master key that wraps tenantID's data keys: mk's
// per-tenant key when mk is a [TenantScoper], else mk itself.
func ForTenant(mk MasterKey, tenantID string) MasterKey {
	if s, ok := mk.(TenantScoper); ok && tenantID != "" {
		return s.ForTenant(tenantID)
	}
	return mk
}

// Rewrap re-encrypts wrapped (made by mk or an older version of it, for aad)
// under mk's current version.
func Rewrap(ctx context.Context, mk MasterKey, wrapped, aad []byte) ([]byte, error) {
	if r, ok := mk.(Rewrapper); ok {
		return r.Rewrap(ctx, wrapped, aad)
	}
	pt, err := mk.Unwrap(ctx, wrapped, aad)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return mk.Wrap(ctx, pt, aad)
}

// RewrapDataKey re-wraps a tenant data key made by [WrapDataKey] under mk's
// current version, keeping its binding to tenantID and version.
func RewrapDataKey(ctx context.Context, mk MasterKey, tenantID string, version int, wrapped []byte) ([]byte, error) {
	if err := checkWrapArgs(mk, tenantID, version); err != nil {
		return nil, fmt.Errorf("keys: rewrap data key: %w", err)
	}
	if len(wrapped) > maxWrappedDataKey {
		return nil, fmt.Errorf("keys: rewrap data key of tenant %q version %d: %w", tenantID, version, ErrFormat)
	}
	out, err := Rewrap(ctx, mk, wrapped, dataKeyAAD(tenantID, version))
	if err != nil {
		return nil, fmt.Errorf("keys: rewrap data key of tenant %q version %d: %w", tenantID, version, err)
	}
	return out, nil
}

// Closer is implemented by providers holding a connection (an HSM session).
type Closer interface {
	Close() error
}

// redacted formats every verb as s, so that no verb (%v, %+v, %#v, %x...)
// can print the key material of the value it stands for.
func redacted(f fmt.State, s string) { _, _ = f.Write([]byte(s)) }

// Format prints "keys.FieldCipher(tenant, version)" for every verb: never
// the subkey inside.
func (c *FieldCipher) Format(f fmt.State, _ rune) {
	if c == nil {
		redacted(f, "keys.FieldCipher(nil)")
		return
	}
	redacted(f, fmt.Sprintf("keys.FieldCipher(%q, v%d)", c.tenantID, c.keyVersion))
}

// Format prints "keys.BlindIndex(REDACTED)" for every verb.
func (b *BlindIndex) Format(f fmt.State, _ rune) { redacted(f, "keys.BlindIndex(REDACTED)") }

// Format prints the key ID only, for every verb.
func (k *FileMasterKey) Format(f fmt.State, _ rune) { redacted(f, k.String()) }

// Format prints the key IDs only, for every verb.
func (k *FileKeyring) Format(f fmt.State, _ rune) { redacted(f, k.String()) }

// Format prints the server and mount only (never the token), for every verb.
func (v *Vault) Format(f fmt.State, _ rune) { redacted(f, v.String()) }
