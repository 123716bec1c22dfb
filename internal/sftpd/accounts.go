package sftpd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
)

// Permissions of an account.
const (
	// PermUpload lets an account write to /inbox (contact imports).
	PermUpload = "upload"
	// PermDownload lets an account read and remove files in /outbox.
	PermDownload = "download"
)

// MinRSABits is the smallest RSA key accepted.
const MinRSABits = 3072

// Errors of account management.
var (
	ErrNotFound  = errors.New("sftp account not found")
	ErrNameTaken = errors.New("sftp account name already in use")
)

// InvalidError is bad input, naming the field.
type InvalidError struct {
	Field, Message string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ImportSettings are the contact-import options applied to the files an
// account uploads to /inbox (see contacts.ImportOptions).
type ImportSettings struct {
	Mode                 string                   `json:"mode,omitempty"`
	Mapping              map[string]string        `json:"mapping,omitempty"`
	IgnoreUnknownColumns bool                     `json:"ignore_unknown_columns,omitempty"`
	DefaultCallingCode   string                   `json:"default_calling_code,omitempty"`
	Lists                []string                 `json:"lists,omitempty"`
	Consents             []contacts.ImportConsent `json:"consents,omitempty"`
}

// Key is one of an account's SSH public keys.
type Key struct {
	Fingerprint string    `json:"fingerprint"` // SHA256:...
	Algorithm   string    `json:"algorithm"`
	PublicKey   string    `json:"public_key"` // authorized_keys form, without comment
	CreatedAt   time.Time `json:"created_at"`
}

// Account is an SFTP account of a tenant. It logs in as
// "<tenant slug>.<name>" with one of its keys, from one of its allowed
// networks, until it expires.
type Account struct {
	ID           string         `json:"id"`
	Name         string         `json:"name"`
	Allow        []string       `json:"allow"`
	Permissions  []string       `json:"permissions"`
	Import       ImportSettings `json:"import"`
	QuotaBytes   int64          `json:"quota_bytes"`
	MaxFileBytes int64          `json:"max_file_bytes"`
	// DoneMarker: an upload is processed only when "<name>.done" arrives
	// (otherwise when the file is closed, or renamed from a temporary name).
	DoneMarker bool       `json:"done_marker"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	Keys       []Key      `json:"keys"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`

	prefixes []netip.Prefix
}

// Can reports whether the account has a permission.
func (a Account) Can(perm string) bool { return slices.Contains(a.Permissions, perm) }

// Allows reports whether addr is in the account's allowed networks.
func (a Account) Allows(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// NewAccount is the input of [Service.AddAccount]. Zero quotas take the
// configured defaults; no permissions means upload and download.
type NewAccount struct {
	Name         string         `json:"name"`
	Keys         []string       `json:"keys"` // authorized_keys lines
	Allow        []string       `json:"allow"`
	Permissions  []string       `json:"permissions,omitempty"`
	Import       ImportSettings `json:"import"`
	QuotaBytes   int64          `json:"quota_bytes,omitempty"`
	MaxFileBytes int64          `json:"max_file_bytes,omitempty"`
	DoneMarker   bool           `json:"done_marker,omitempty"`
	ExpiresAt    *time.Time     `json:"expires_at,omitempty"`
}

var accountNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParsePublicKey checks an authorized_keys line: Ed25519, ECDSA
// (P-256/384/521) or RSA of at least MinRSABits; no certificates, no DSA,
// no security-key types.
func ParsePublicKey(line string) (ssh.PublicKey, error) {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil, errors.New("not an SSH public key in authorized_keys form (e.g. the content of id_ed25519.pub)")
	}
	if err := checkKeyStrength(pk); err != nil {
		return nil, err
	}
	return pk, nil
}

func checkKeyStrength(pk ssh.PublicKey) error {
	switch pk.Type() {
	case ssh.KeyAlgoED25519:
		return nil
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		ck, ok := pk.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("unreadable ECDSA key")
		}
		if ek, ok := ck.CryptoPublicKey().(*ecdsa.PublicKey); !ok || (ek.Curve != elliptic.P256() && ek.Curve != elliptic.P384() && ek.Curve != elliptic.P521()) {
			return errors.New("unsupported ECDSA curve")
		}
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := pk.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("unreadable RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || rk.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA keys must have at least %d bits (use Ed25519)", MinRSABits)
		}
		return nil
	}
	return fmt.Errorf("key type %s is not accepted: use Ed25519, ECDSA or RSA >= %d bits", pk.Type(), MinRSABits)
}

func parseAllow(allow []string) ([]netip.Prefix, []string, error) {
	if len(allow) == 0 {
		return nil, nil, invalid("allow", "list at least one network (CIDR), e.g. 203.0.113.7/32")
	}
	if len(allow) > 100 {
		return nil, nil, invalid("allow", "at most 100 networks")
	}
	var ps []netip.Prefix
	var norm []string
	for _, s := range allow {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, nil, invalid("allow", "%q is not a CIDR (e.g. 203.0.113.0/24) or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		ps = append(ps, p)
		norm = append(norm, p.String())
	}
	return ps, norm, nil
}

// checkImport checks the import settings that can be checked without a
// file (the mapping is checked against each file's header, and a bad one
// gives a "rejected" report).
func checkImport(is ImportSettings) error {
	switch contacts.ImportMode(is.Mode) {
	case "", contacts.ModeUpsert, contacts.ModeAdd, contacts.ModeBlocklist:
	default:
		return invalid("import.mode", "must be upsert, add or blocklist")
	}
	if len(is.Mapping) > 200 || len(is.Lists) > 100 || len(is.Consents) > 20 {
		return invalid("import", "at most 200 mapped columns, 100 lists and 20 consents")
	}
	for col, target := range is.Mapping {
		if col == "" || target == "" || len(col) > 200 || len(target) > 200 {
			return invalid("import.mapping", "columns and targets are 1 to 200 characters")
		}
	}
	return nil
}

func importOptions(is ImportSettings, fileName string) contacts.ImportOptions {
	return contacts.ImportOptions{Mode: contacts.ImportMode(is.Mode), Mapping: is.Mapping, IgnoreUnknownColumns: is.IgnoreUnknownColumns,
		DefaultCallingCode: is.DefaultCallingCode, Lists: is.Lists, Consents: is.Consents, FileName: fileName}
}

// AddAccount creates an account with its keys, in one transaction with its
// audit event.
func (s *Service) AddAccount(ctx context.Context, tenantID string, na NewAccount) (Account, error) {
	if !accountNameRE.MatchString(na.Name) {
		return Account{}, invalid("name", "use 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit")
	}
	if len(na.Keys) == 0 || len(na.Keys) > 20 {
		return Account{}, invalid("keys", "give 1 to 20 SSH public keys")
	}
	var keys []Key
	now := s.now()
	for i, line := range na.Keys {
		pk, err := ParsePublicKey(line)
		if err != nil {
			return Account{}, invalid(fmt.Sprintf("keys[%d]", i), "%s", err.Error())
		}
		k := Key{Fingerprint: ssh.FingerprintSHA256(pk), Algorithm: pk.Type(),
			PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))), CreatedAt: now}
		if !slices.ContainsFunc(keys, func(o Key) bool { return o.Fingerprint == k.Fingerprint }) {
			keys = append(keys, k)
		}
	}
	ps, allow, err := parseAllow(na.Allow)
	if err != nil {
		return Account{}, err
	}
	perms := na.Permissions
	if len(perms) == 0 {
		perms = []string{PermUpload, PermDownload}
	}
	for _, p := range perms {
		if p != PermUpload && p != PermDownload {
			return Account{}, invalid("permissions", "%q is not a permission: use upload and/or download", p)
		}
	}
	slices.Sort(perms)
	perms = slices.Compact(perms)
	if na.QuotaBytes == 0 {
		na.QuotaBytes = s.Config.QuotaBytes
	}
	if na.MaxFileBytes == 0 {
		na.MaxFileBytes = min(s.Config.MaxFileBytes, na.QuotaBytes)
	}
	if na.QuotaBytes < 1 || na.MaxFileBytes < 1 || na.MaxFileBytes > na.QuotaBytes {
		return Account{}, invalid("max_file_bytes", "quota_bytes and max_file_bytes must be positive, and max_file_bytes at most quota_bytes")
	}
	if na.ExpiresAt != nil && !na.ExpiresAt.After(now) {
		return Account{}, invalid("expires_at", "must be in the future")
	}
	if err := checkImport(na.Import); err != nil {
		return Account{}, err
	}
	a := Account{ID: newID(), Name: na.Name, Allow: allow, Permissions: perms, Import: na.Import, QuotaBytes: na.QuotaBytes,
		MaxFileBytes: na.MaxFileBytes, DoneMarker: na.DoneMarker, ExpiresAt: na.ExpiresAt, Keys: keys, CreatedAt: now, UpdatedAt: now, prefixes: ps}
	allowJSON, _ := json.Marshal(a.Allow)
	permJSON, _ := json.Marshal(a.Permissions)
	importJSON, err := json.Marshal(a.Import)
	if err != nil {
		return Account{}, invalid("import", "cannot be encoded")
	}
	var exp any
	if a.ExpiresAt != nil {
		exp = store.Micros(*a.ExpiresAt)
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sftp_accounts (tenant_id, id, name, allow, permissions, import, quota_bytes, max_file_bytes,
			done_marker, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)`,
			a.ID, a.Name, string(allowJSON), string(permJSON), string(importJSON), a.QuotaBytes, a.MaxFileBytes, a.DoneMarker, exp, store.Micros(now))
		if store.IsUniqueViolation(err) {
			return ErrNameTaken
		}
		if err != nil {
			return fmt.Errorf("sftpd: create account: %w", err)
		}
		fps := make([]string, 0, len(keys))
		for _, k := range keys {
			if _, err := tx.Exec(ctx, `INSERT INTO sftp_keys (tenant_id, account_id, fingerprint, algorithm, public_key, created_at)
				VALUES ($1, $2, $3, $4, $5, $6)`, a.ID, k.Fingerprint, k.Algorithm, k.PublicKey, store.Micros(now)); err != nil {
				return fmt.Errorf("sftpd: save account key: %w", err)
			}
			fps = append(fps, k.Fingerprint)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "sftp_account.create", ObjectType: "sftp_account", ObjectID: a.ID,
			Details: map[string]any{"name": a.Name, "allow": a.Allow, "permissions": a.Permissions, "key_fingerprints": fps,
				"quota_bytes": a.QuotaBytes, "max_file_bytes": a.MaxFileBytes, "expires_at": exp}})
		return err
	})
	if err != nil {
		return Account{}, err
	}
	s.forgetAllow()
	return a, nil
}

const accountCols = `id, name, allow, permissions, import, quota_bytes, max_file_bytes, done_marker, expires_at, created_at, updated_at`

func scanAccount(sc interface{ Scan(...any) error }) (Account, error) {
	var a Account
	var allow, perms, imp string
	var exp *int64
	var created, updated int64
	if err := sc.Scan(&a.ID, &a.Name, &allow, &perms, &imp, &a.QuotaBytes, &a.MaxFileBytes, &a.DoneMarker, &exp, &created, &updated); err != nil {
		return Account{}, err
	}
	if err := json.Unmarshal([]byte(allow), &a.Allow); err != nil {
		return Account{}, fmt.Errorf("sftpd: stored allow list: %w", err)
	}
	if err := json.Unmarshal([]byte(perms), &a.Permissions); err != nil {
		return Account{}, fmt.Errorf("sftpd: stored permissions: %w", err)
	}
	if err := json.Unmarshal([]byte(imp), &a.Import); err != nil {
		return Account{}, fmt.Errorf("sftpd: stored import settings: %w", err)
	}
	ps, _, err := parseAllow(a.Allow)
	if err != nil {
		return Account{}, fmt.Errorf("sftpd: stored allow list: %w", err)
	}
	a.prefixes = ps
	if exp != nil {
		t := store.FromMicros(*exp)
		a.ExpiresAt = &t
	}
	a.CreatedAt, a.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	a.Keys = []Key{}
	return a, nil
}

func loadKeys(ctx context.Context, tx *store.Tx, accs []*Account) error {
	rows, err := tx.Query(ctx, `SELECT account_id, fingerprint, algorithm, public_key, created_at FROM sftp_keys WHERE tenant_id = $1
		ORDER BY created_at, fingerprint`)
	if err != nil {
		return fmt.Errorf("sftpd: read account keys: %w", err)
	}
	defer func() { _ = rows.Close() }()
	byID := map[string]*Account{}
	for _, a := range accs {
		byID[a.ID] = a
	}
	for rows.Next() {
		var id string
		var k Key
		var at int64
		if err := rows.Scan(&id, &k.Fingerprint, &k.Algorithm, &k.PublicKey, &at); err != nil {
			return err
		}
		k.CreatedAt = store.FromMicros(at)
		if a, ok := byID[id]; ok {
			a.Keys = append(a.Keys, k)
		}
	}
	return rows.Err()
}

// Accounts lists the tenant's accounts with their keys, by name.
func (s *Service) Accounts(ctx context.Context, tenantID string) ([]Account, error) {
	out := []Account{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+accountCols+` FROM sftp_accounts WHERE tenant_id = $1 ORDER BY name`)
		if err != nil {
			return err
		}
		for rows.Next() {
			a, err := scanAccount(rows)
			if err != nil {
				_ = rows.Close()
				return err
			}
			out = append(out, a)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		ptrs := make([]*Account, len(out))
		for i := range out {
			ptrs[i] = &out[i]
		}
		return loadKeys(ctx, tx, ptrs)
	})
	if err != nil {
		return nil, fmt.Errorf("sftpd: list accounts: %w", err)
	}
	return out, nil
}

// Account returns one account by id or name.
func (s *Service) Account(ctx context.Context, tenantID, ref string) (Account, error) {
	var a Account
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		a, err = scanAccount(tx.QueryRow(ctx, `SELECT `+accountCols+` FROM sftp_accounts WHERE tenant_id = $1 AND (id = $2 OR name = $2)`, ref))
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return loadKeys(ctx, tx, []*Account{&a})
	})
	return a, err
}

// RemoveAccount deletes an account and its keys; its files stay until
// their retention ends.
func (s *Service) RemoveAccount(ctx context.Context, tenantID, ref string) (Account, error) {
	a, err := s.Account(ctx, tenantID, ref)
	if err != nil {
		return Account{}, err
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sftp_keys WHERE tenant_id = $1 AND account_id = $2`, a.ID); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM sftp_accounts WHERE tenant_id = $1 AND id = $2`, a.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "sftp_account.delete", ObjectType: "sftp_account", ObjectID: a.ID,
			Details: map[string]any{"name": a.Name}})
		return err
	})
	if err != nil {
		return Account{}, err
	}
	s.forgetAllow()
	return a, nil
}
