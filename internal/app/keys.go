package app

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
)

// OpenMasterKey opens the master-key provider chosen in the configuration
// (DATA-2): the key file (created on first use), Vault / OpenBao transit
// (checked at once: a sealed or unreachable vault fails here), or a PKCS#11
// token. Close it with CloseMasterKey.
func OpenMasterKey(ctx context.Context, cfg config.Config) (keys.MasterKey, error) {
	k := cfg.Keys
	switch k.Provider {
	case "", "file":
		mk, err := keys.LoadFileKeyring(cfg.MasterKeyPath(), true)
		if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		return mk, nil
	case "vault":
		v, err := keys.NewVault(keys.VaultOptions{Address: k.Vault.Address, Mount: k.Vault.Mount, KeyPrefix: k.Vault.KeyPrefix,
			Token: k.Vault.Token, RoleID: k.Vault.RoleID, SecretID: k.Vault.SecretID, Namespace: k.Vault.Namespace,
			CAFile: k.Vault.CAFile, Timeout: k.Vault.Timeout.D()})
		if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		if err := v.Check(ctx); err != nil {
			return nil, fmt.Errorf("master key: vault at %s: %w", k.Vault.Address, err)
		}
		return v, nil
	case "pkcs11":
		p, err := keys.OpenPKCS11(keys.PKCS11Options{Module: k.PKCS11.Module, TokenLabel: k.PKCS11.TokenLabel,
			PIN: k.PKCS11.PIN, KeyLabelPrefix: k.PKCS11.KeyLabelPrefix})
		if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("master key: unknown provider %q: use file, vault or pkcs11", k.Provider)
}

// CloseMasterKey releases a provider holding a session (PKCS#11).
func CloseMasterKey(mk keys.MasterKey) error {
	if c, ok := mk.(keys.Closer); ok {
		return c.Close()
	}
	return nil
}
