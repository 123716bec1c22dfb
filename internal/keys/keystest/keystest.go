// Package keystest gives tests a master-key provider chosen by the
// environment, so that a whole test suite runs under each provider:
//
//	RELAIS_TEST_KEY_PROVIDER=file   (default) a key file in a temporary directory
//	RELAIS_TEST_KEY_PROVIDER=vault  the transit fake of internal/testkit/transit
//	RELAIS_TEST_KEY_PROVIDER=pkcs11 SoftHSM2, with a token initialised by the
//	                                test in a temporary directory (needs cgo and
//	                                Debian's softhsm2 package)
package keystest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/testkit/transit"
)

// EnvProvider names the variable that selects the provider.
const EnvProvider = "RELAIS_TEST_KEY_PROVIDER"

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 library.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// Name returns the provider selected by the environment.
func Name() string {
	if p := os.Getenv(EnvProvider); p != "" {
		return p
	}
	return "file"
}

// Master returns a master-key provider of the kind selected by the
// environment, cleaned up with the test.
func Master(t testing.TB) keys.MasterKey {
	t.Helper()
	return Of(t, Name())
}

// Of returns a provider of the named kind.
func Of(t testing.TB, kind string) keys.MasterKey {
	t.Helper()
	switch kind {
	case "file":
		k, err := keys.LoadFileKeyring(filepath.Join(t.TempDir(), "master.key"), true)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "vault":
		srv := transit.New()
		t.Cleanup(srv.Close)
		v, err := keys.NewVault(keys.VaultOptions{Address: srv.URL, Token: srv.Token, AllowHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		return v
	case "pkcs11":
		p, err := SoftHSM(t)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Fatalf("%s=%q: want file, vault or pkcs11", EnvProvider, kind)
	return nil
}

// The SoftHSM2 library keeps process-wide state (C_Initialize and
// C_Finalize act on every handle of the process), so a test process shares
// one token and one logged-in provider; tenants' keys are apart by label.
var (
	hsmOnce sync.Once
	hsm     *keys.PKCS11
	hsmErr  error
)

// SoftHSMToken and SoftHSMPIN are the label and user PIN of the test token.
const (
	SoftHSMToken = "relais-test"
	SoftHSMPIN   = "1234"
)

// InitSoftHSM creates a SoftHSM2 configuration and token in dir, and returns
// the SOFTHSM2_CONF value to use.
func InitSoftHSM(dir, label, pin string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"0") // #nosec G204 -- test helper, fixed program
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &initError{out: string(out), err: err}
	}
	return conf, nil
}

type initError struct {
	out string
	err error
}

func (e *initError) Error() string {
	return "softhsm2-util --init-token: " + e.err.Error() + ": " + e.out
}

// SoftHSM returns the process's SoftHSM2-backed provider, creating its token
// in a temporary directory on first use. It skips the test when cgo or
// softhsm2 is missing and RELAIS_TEST_KEY_PROVIDER is not pkcs11 (where it
// fails instead).
func SoftHSM(t testing.TB) (*keys.PKCS11, error) {
	t.Helper()
	if !keys.PKCS11Available || !haveSoftHSM() {
		if Name() == "pkcs11" {
			t.Fatal("RELAIS_TEST_KEY_PROVIDER=pkcs11 needs cgo and the softhsm2 package")
		}
		t.Skip("PKCS#11 needs cgo and the softhsm2 package")
	}
	hsmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relais-softhsm-")
		if err != nil {
			hsmErr = err
			return
		}
		conf, err := InitSoftHSM(dir, SoftHSMToken, SoftHSMPIN)
		if err != nil {
			hsmErr = err
			return
		}
		// SoftHSM reads its configuration from the environment when the
		// library initialises; the whole process shares it.
		if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
			hsmErr = err
			return
		}
		hsm, hsmErr = keys.OpenPKCS11(keys.PKCS11Options{Module: SoftHSMModule, TokenLabel: SoftHSMToken, PIN: SoftHSMPIN})
	})
	return hsm, hsmErr
}

func haveSoftHSM() bool {
	if _, err := os.Stat(SoftHSMModule); err != nil {
		return false
	}
	_, err := exec.LookPath("softhsm2-util")
	return err == nil
}
