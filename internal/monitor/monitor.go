// Package monitor is Relais's supervision (issue 12): the indicators of
// AVL-1..4 as Prometheus metrics and API reports, and the places where the
// features built elsewhere (backups, keys, certificates, SSO) report their
// state to supervision.
//
// Sub-packages: alerts (built-in business-rule alerts, AVL-5), incidents
// (the register, INC-1/INC-2), flags (DEV-1), compliance (AUD-3), clock
// (LOG-5), notify (email and signed webhooks).
//
// # Providers
//
// Supervision reads what other packages know through small interfaces,
// gathered in [Providers]. A nil provider means the feature is not
// configured: indicators omit it, alerts stay quiet, and the compliance
// report says "not configured" rather than guessing.
package monitor

import (
	"context"
	"time"
)

// BackupStatus is the state of the backups of one tenant ("" for the whole
// platform).
type BackupStatus struct {
	Configured bool      `json:"configured"`
	Target     string    `json:"target,omitempty"` // where (no credentials)
	LastFull   time.Time `json:"last_full,omitzero"`
	LastBackup time.Time `json:"last_backup,omitzero"`
	// LastVerify is when the last integrity verification ran (BAK-5), and
	// VerifyOK its result; LastRestoreTest / RestoreOK the same for the
	// last restore test (BAK-6).
	LastVerify      time.Time `json:"last_verify,omitzero"`
	VerifyOK        bool      `json:"verify_ok"`
	VerifyDetail    string    `json:"verify_detail,omitempty"`
	LastRestoreTest time.Time `json:"last_restore_test,omitzero"`
	RestoreOK       bool      `json:"restore_ok"`
	RestoreDetail   string    `json:"restore_detail,omitempty"`
}

// BackupSource reports backup state (internal/backup provides it).
type BackupSource interface {
	BackupStatus(ctx context.Context, tenantID string) (BackupStatus, error)
}

// KeyInfo is one key's provider and age.
type KeyInfo struct {
	Name     string    `json:"name"`                // e.g. "master", "tenant data key"
	Provider string    `json:"provider"`            // file, vault-transit, pkcs11...
	TenantID string    `json:"tenant_id,omitempty"` // "" for platform keys
	Created  time.Time `json:"created"`
	Rotated  time.Time `json:"rotated,omitzero"`
}

// KeySource reports keys (internal/keys provides it).
type KeySource interface {
	Keys(ctx context.Context, tenantID string) ([]KeyInfo, error)
}

// CertInfo describes the serving certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	DNSNames []string  `json:"dns_names,omitempty"`
	KeyType  string    `json:"key_type"` // "ECDSA P-256", "RSA 2048"...
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	Source   string    `json:"source"` // "file", "self-signed", "acme"
}

// CertSource reports the serving certificate (the TLS front provides it).
type CertSource interface {
	Certificate(ctx context.Context) (CertInfo, error)
}

// SSOState is a tenant's single sign-on configuration, without secrets.
type SSOState struct {
	Configured bool     `json:"configured"`
	Protocols  []string `json:"protocols,omitempty"` // oidc, saml
	Enforced   bool     `json:"enforced"`            // password login disabled
	Detail     string   `json:"detail,omitempty"`
}

// SSOSource reports SSO state (internal/sso provides it).
type SSOSource interface {
	SSOState(ctx context.Context, tenantID string) (SSOState, error)
}

// Providers gathers the sources other packages plug in. Any may be nil.
type Providers struct {
	Backups BackupSource
	Keys    KeySource
	Cert    CertSource
	SSO     SSOSource
}

// BackupSourceFunc adapts a function to BackupSource.
type BackupSourceFunc func(ctx context.Context, tenantID string) (BackupStatus, error)

// BackupStatus implements BackupSource.
func (f BackupSourceFunc) BackupStatus(ctx context.Context, tenantID string) (BackupStatus, error) {
	return f(ctx, tenantID)
}

// KeySourceFunc adapts a function to KeySource.
type KeySourceFunc func(ctx context.Context, tenantID string) ([]KeyInfo, error)

// Keys implements KeySource.
func (f KeySourceFunc) Keys(ctx context.Context, tenantID string) ([]KeyInfo, error) {
	return f(ctx, tenantID)
}

// CertSourceFunc adapts a function to CertSource.
type CertSourceFunc func(ctx context.Context) (CertInfo, error)

// Certificate implements CertSource.
func (f CertSourceFunc) Certificate(ctx context.Context) (CertInfo, error) { return f(ctx) }

// SSOSourceFunc adapts a function to SSOSource.
type SSOSourceFunc func(ctx context.Context, tenantID string) (SSOState, error)

// SSOState implements SSOSource.
func (f SSOSourceFunc) SSOState(ctx context.Context, tenantID string) (SSOState, error) {
	return f(ctx, tenantID)
}
