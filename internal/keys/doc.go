// Package keys holds Relais's key management: the master key that wraps tenant
// data keys, the tenant data keys themselves, the cipher that encrypts
// personal fields before they reach the store, and the blind index that lets
// the store answer equality lookups on encrypted fields.
//
// # Which functions to use
//
// Most code needs only what follows. At start-up, the composition root loads
// the master key once:
//
//	mk, err := keys.LoadOrCreateFileMasterKey("/var/lib/relais/master.key")
//
// When a tenant is created, give it a data key, wrap it, and store the wrapped
// bytes, the key version and mk.ID() in the tenant's key row:
//
//	dk, err := keys.NewDataKey()
//	wrapped, err := keys.WrapDataKey(ctx, mk, tenantID, 1, dk)
//
// When a tenant's data is used, unwrap its data key, derive the field cipher
// and the blind index from it, and destroy the data key:
//
//	dk, err := keys.UnwrapDataKey(ctx, mk, tenantID, version, wrapped)
//	fc, err := keys.NewFieldCipher(tenantID, version, dk)
//	bi, err := keys.NewBlindIndex(tenantID, dk)
//	dk.Destroy()
//
//	ct, err := fc.Seal("email", []byte(email))       // store ct
//	idx := bi.Sum("email", []byte(normalisedEmail))  // store idx, query by idx
//	pt, err := fc.Open("email", ct)
//
// A [FieldCipher] and a [BlindIndex] are safe for concurrent use and can be
// cached per tenant and key version. [KeyVersionOf] tells which key version
// sealed a stored ciphertext, so rotation can pick the right cipher.
//
// Errors can be tested with [errors.Is]: [ErrDecrypt] means the input is well
// formed but does not authenticate (wrong key, wrong tenant, wrong field,
// tampered bytes); [ErrFormat] means the input is malformed (truncated, too
// long, unknown version). Both are errors of the data; bad arguments (an
// empty tenant ID, a destroyed key) give neither. No error carries key
// material.
//
// # How keys must be handled
//
// The master key lives outside the database: in a file readable only by the
// relais user (mode 0600, [FileKeyring], which adds rotation), in Vault or
// OpenBao's transit engine ([Vault]), or in an HSM ([PKCS11], cgo builds
// only), all behind the [MasterKey] interface and the optional
// [TenantScoper], [Rotator], [Rewrapper] and [Destroyer]. Use [ForTenant] to
// get the master key that wraps a tenant's data keys: with Vault and PKCS#11
// it is the tenant's own, so that destroying it shreds the tenant. It must not be copied into the database nor into the backups of
// the database: a backup is then useless without it. Several nodes share one
// master key: create it on one node with [LoadOrCreateFileMasterKey] and
// copy the file, unchanged, to the others, which should use
// [LoadFileMasterKey] so that a missing file is an error and not a new key.
//
// A [DataKey] exists unwrapped only in memory. Never store it, log it or put
// it in an error; it formats as "keys.DataKey(REDACTED)" to make accidents
// harmless. Call [DataKey.Destroy] as soon as the ciphers are derived. Only the
// wrapped form returned by [WrapDataKey] is stored, and it is bound to its
// tenant and version: copied to another tenant's row it does not unwrap.
//
// Destroying a tenant's data key (deleting every copy of its wrapped form)
// makes the tenant's ciphertexts unreadable. Backups still hold the wrapped
// form: with a per-tenant master key ([Destroyer]) destroying that key closes
// them too; with the key file, crypto-shredding of backups is complete once
// the master key that can unwrap those copies is rotated away and its
// retired file deleted (and every restore re-applies the shredding records).
//
// Wrapped by [Vault]: the transit ciphertext "vault:vN:<base64>" as bytes,
// with aad sent as associated_data. Wrapped by [PKCS11]: 0x01 ||
// uint32(object version) || IV (12 bytes) || AES-256-GCM ciphertext and tag
// (16 bytes), additional data 0x01 || uint32(version) || aad.
//
// The field cipher uses AES-256-GCM with random 96-bit nonces: one data key
// version must not seal more than 2^32 fields; rotate well before that.
// Blind indexes depend on the data key too, so a new key version means new
// indexes.
//
// # Formats
//
// All integers are big-endian. "lp(s)" is the 8-byte length of s followed by
// the bytes of s, so that concatenations are unambiguous.
//
// Master key file (see [LoadFileMasterKey]): the line "relais-master-key-v1",
// then one line holding the standard base64 encoding (with padding) of the 32
// key bytes; every line ends with "\n". The file must be a regular file of
// mode 0600 (or stricter). The key ID is "file:v1:" followed by the first 8
// hex digits of SHA-256 of the 32 key bytes, which an operator can check with
//
//	tail -n 1 master.key | base64 -d | sha256sum | cut -c 1-8
//
// Wrapped by a [FileMasterKey]: 0x01 || nonce (12 bytes) || AES-256-GCM
// ciphertext and tag (16 bytes), with additional data 0x01 || aad.
//
// Tenant data key: the 32 key bytes wrapped by the master key with aad
// "relais/tenant-data-key/v1" || lp(tenantID) || uint32(version).
//
// Field ciphertext: 0x01 || uint32(keyVersion) || nonce (12 bytes) ||
// AES-256-GCM ciphertext and tag (16 bytes). The key is HKDF-SHA256 of the
// data key (no salt, info "relais/field/v1", 32 bytes); the additional data is
// the 5-byte header || lp(tenantID) || lp(field).
//
// Blind index: HMAC-SHA256 keyed with HKDF-SHA256 of the data key (no salt,
// info "relais/blind-index/v1", 32 bytes) over lp(tenantID) || lp(field) ||
// value; 32 bytes.
package keys
