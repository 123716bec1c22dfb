package keys

// PKCS11Options configure the PKCS#11 (HSM) provider.
type PKCS11Options struct {
	// Module is the path of the PKCS#11 library, such as
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel selects the token; PIN is the user PIN.
	TokenLabel string
	PIN        string
	// KeyLabelPrefix starts the label of every key object: the platform's
	// is prefix+"platform", a tenant's prefix+"tenant-"+tenantID; the
	// object's CKA_ID holds its version (4 bytes, big-endian).
	KeyLabelPrefix string
}
