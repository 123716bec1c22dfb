//go:build !cgo

package keys

import "errors"

// PKCS11Available reports whether this binary can talk to an HSM: PKCS#11
// needs cgo, and this build has none.
const PKCS11Available = false

// OpenPKCS11 fails: this binary was built without cgo (CGO_ENABLED=0), and
// loading a PKCS#11 library needs it.
func OpenPKCS11(o PKCS11Options) (*PKCS11, error) {
	return nil, errors.New("keys: pkcs11: this relais binary was built without cgo (CGO_ENABLED=0) and cannot load a PKCS#11 library; " +
		"rebuild with CGO_ENABLED=1 (make build-hsm), or use the file or vault provider")
}

// PKCS11 is the HSM provider; absent from builds without cgo.
type PKCS11 struct{ MasterKey }

// Close does nothing.
func (p *PKCS11) Close() error { return nil }
