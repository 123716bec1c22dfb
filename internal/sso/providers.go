package sso

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Config is a provider's settings (stored as JSON; no secrets).
type Config struct {
	// BaseURL is Relais's public https address as the browser sees it
	// (https://relais.example): redirect URI, SAML entity id and ACS URL
	// are built from it.
	BaseURL string `json:"base_url"`

	// OpenID Connect.
	Issuer   string   `json:"issuer,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// Algorithms pins the ID token signature algorithms accepted
	// (default RS256 and ES256); "none" and HMAC are never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// Userinfo: also read the userinfo endpoint's claims (the ID token's
	// win on conflict).
	Userinfo bool `json:"userinfo,omitempty"`

	// SAML 2.0: the IdP's metadata (XML, from a file or fetched from
	// IdPMetadataURL when the provider is created or refreshed).
	IdPMetadataURL string `json:"idp_metadata_url,omitempty"`
	IdPMetadata    string `json:"idp_metadata,omitempty"`
	// AllowIdPInitiated accepts unsolicited responses (off by default).
	AllowIdPInitiated bool `json:"allow_idp_initiated,omitempty"`
	// ClockSkewSeconds bounds the difference between the IdP's clock and
	// ours (default 60, at most 180).
	ClockSkewSeconds int `json:"clock_skew_seconds,omitempty"`

	// Claim (OIDC) or attribute (SAML: Name or FriendlyName) names.
	EmailClaim  string `json:"email_claim,omitempty"`
	NameClaim   string `json:"name_claim,omitempty"`
	GroupsClaim string `json:"groups_claim,omitempty"`

	// JIT creates the account of a person the IdP vouches for at first
	// sign-in; without it, only existing users (matched by email) may
	// sign in.
	JIT bool `json:"jit"`
	// AcceptIdPMFA: when the IdP asserts multi-factor authentication
	// (OIDC amr/acr, SAML AuthnContextClassRef among MFAValues), the
	// tenant's own second factor is not asked again.
	AcceptIdPMFA bool     `json:"accept_idp_mfa"`
	MFAValues    []string `json:"mfa_values,omitempty"`
}

// defaultMFAValues are the amr / acr / AuthnContextClassRef values taken to
// mean multi-factor authentication.
var defaultMFAValues = []string{
	"mfa",
	"https://refeds.org/profile/mfa",
	"http://schemas.openid.net/pape/policies/2007/06/multi-factor",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
	"urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
}

// Signature algorithms an ID token may be pinned to.
var allowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Provider is a tenant's identity provider.
type Provider struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Enabled   bool      `json:"enabled"`
	Config    Config    `json:"config"`
	HasSecret bool      `json:"has_client_secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	secretEnc, spKeyEnc, spCert []byte
}

// NewProvider is the input of CreateProvider.
type NewProvider struct {
	Name   string
	Kind   string
	Config Config
	// ClientSecret is the OIDC client secret (empty: a public client that
	// relies on PKCE alone).
	ClientSecret string
}

const maxMetadataBytes = 1 << 20

func validateProviderName(n string) error {
	if len(n) < 1 || len(n) > 40 {
		return &ValidationError{Field: "name", Message: "must be 1 to 40 characters"}
	}
	for _, r := range n {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return &ValidationError{Field: "name", Message: "may contain only a-z, 0-9 and '-' (it appears in URLs)"}
		}
	}
	return nil
}

func validateHTTPSURL(field, raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && !(allowHTTP && u.Scheme == "http")) {
		return &ValidationError{Field: field, Message: "must be an https:// URL"}
	}
	return nil
}

// normalise checks a configuration and fills its defaults.
func (c *Config) normalise(kind string, allowHTTP bool) error {
	c.BaseURL = strings.TrimSuffix(strings.TrimSpace(c.BaseURL), "/")
	if err := validateHTTPSURL("base_url", c.BaseURL, allowHTTP); err != nil {
		return err
	}
	if len(c.MFAValues) == 0 {
		c.MFAValues = slices.Clone(defaultMFAValues)
	}
	switch kind {
	case KindOIDC:
		if err := validateHTTPSURL("issuer", c.Issuer, allowHTTP); err != nil {
			return err
		}
		if c.ClientID == "" || len(c.ClientID) > 200 {
			return &ValidationError{Field: "client_id", Message: "is required (at most 200 characters)"}
		}
		if len(c.Scopes) == 0 {
			c.Scopes = []string{"openid", "email", "profile", "groups"}
		}
		if !slices.Contains(c.Scopes, "openid") {
			c.Scopes = append([]string{"openid"}, c.Scopes...)
		}
		if len(c.Algorithms) == 0 {
			c.Algorithms = []string{"RS256", "ES256"}
		}
		for _, a := range c.Algorithms {
			if !slices.Contains(allowedAlgorithms, a) {
				return &ValidationError{Field: "algorithms", Message: fmt.Sprintf("%q is not accepted (use %s)", a, strings.Join(allowedAlgorithms, ", "))}
			}
		}
		c.EmailClaim = orDefault(c.EmailClaim, "email")
		c.NameClaim = orDefault(c.NameClaim, "name")
		c.GroupsClaim = orDefault(c.GroupsClaim, "groups")
	case KindSAML:
		if c.IdPMetadata == "" {
			return &ValidationError{Field: "idp_metadata", Message: "the IdP metadata (a file or a URL) is required"}
		}
		if len(c.IdPMetadata) > maxMetadataBytes {
			return &ValidationError{Field: "idp_metadata", Message: "is larger than 1 MiB"}
		}
		md, err := samlsp.ParseMetadata([]byte(c.IdPMetadata))
		if err != nil {
			return &ValidationError{Field: "idp_metadata", Message: "is not SAML 2.0 IdP metadata: " + err.Error()}
		}
		if len(md.IDPSSODescriptors) == 0 {
			return &ValidationError{Field: "idp_metadata", Message: "describes no identity provider (IDPSSODescriptor)"}
		}
		if c.ClockSkewSeconds == 0 {
			c.ClockSkewSeconds = 60
		}
		if c.ClockSkewSeconds < 0 || c.ClockSkewSeconds > 180 {
			return &ValidationError{Field: "clock_skew_seconds", Message: "must be between 1 and 180"}
		}
		c.EmailClaim = orDefault(c.EmailClaim, "mail")
		c.NameClaim = orDefault(c.NameClaim, "cn")
		c.GroupsClaim = orDefault(c.GroupsClaim, "eduPersonAffiliation")
	default:
		return &ValidationError{Field: "kind", Message: "must be oidc or saml"}
	}
	return nil
}

func orDefault(v, d string) string {
	if strings.TrimSpace(v) == "" {
		return d
	}
	return strings.TrimSpace(v)
}

// FetchMetadata downloads an IdP's SAML metadata (https, at most 1 MiB).
func (s *Service) FetchMetadata(ctx context.Context, rawURL string, allowHTTP bool) (string, error) {
	if err := validateHTTPSURL("idp_metadata_url", rawURL, allowHTTP); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", err
	}
	res, err := s.httpClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch IdP metadata: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch IdP metadata: HTTP %d", res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxMetadataBytes+1))
	if err != nil {
		return "", fmt.Errorf("fetch IdP metadata: %w", err)
	}
	if len(b) > maxMetadataBytes {
		return "", &ValidationError{Field: "idp_metadata_url", Message: "the metadata is larger than 1 MiB"}
	}
	return string(b), nil
}

// AllowHTTP lets tests and development set-ups use plain-http IdPs and
// base URLs; production configurations must use https.
type AllowHTTP bool

// CreateProvider adds an identity provider to a tenant. For SAML it
// generates the service provider's signing key and certificate.
func (s *Service) CreateProvider(ctx context.Context, tenantID string, np NewProvider, allowHTTP AllowHTTP) (Provider, error) {
	if err := validateProviderName(np.Name); err != nil {
		return Provider{}, err
	}
	if err := np.Config.normalise(np.Kind, bool(allowHTTP)); err != nil {
		return Provider{}, err
	}
	cfgJSON, err := json.Marshal(np.Config)
	if err != nil {
		return Provider{}, err
	}
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return Provider{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Provider{}, err
	}
	p := Provider{ID: id.String(), TenantID: tenantID, Name: np.Name, Kind: np.Kind, Enabled: true, Config: np.Config}
	if np.ClientSecret != "" {
		if np.Kind != KindOIDC || len(np.ClientSecret) > 1000 {
			return Provider{}, &ValidationError{Field: "client_secret", Message: "only for OIDC, at most 1000 characters"}
		}
		if p.secretEnc, err = c.SealString("sso.client_secret", np.ClientSecret); err != nil {
			return Provider{}, err
		}
		p.HasSecret = true
	}
	now := s.now().Truncate(time.Microsecond)
	if np.Kind == KindSAML {
		key, certDER, err := newSPKey(np.Name, now)
		if err != nil {
			return Provider{}, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return Provider{}, err
		}
		if p.spKeyEnc, err = c.Seal("sso.sp_key", der); err != nil {
			return Provider{}, err
		}
		p.spCert = certDER
	}
	p.CreatedAt, p.UpdatedAt = now, now
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sso_providers (tenant_id, id, name, kind, enabled, config, secret_enc, sp_key_enc, sp_cert, created_at, updated_at)
			VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8, $9, $9)`, p.ID, p.Name, p.Kind, string(cfgJSON), p.secretEnc, p.spKeyEnc, p.spCert, micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a provider named %q", ErrConflict, p.Name)
		}
		if err != nil {
			return fmt.Errorf("insert provider: %w", err)
		}
		return recordAdmin(ctx, tx, "sso.provider.create", "sso_provider", p.ID, map[string]any{"name": p.Name, "kind": p.Kind,
			"issuer": p.Config.Issuer, "jit": p.Config.JIT, "accept_idp_mfa": p.Config.AcceptIdPMFA, "allow_idp_initiated": p.Config.AllowIdPInitiated})
	})
	if err != nil {
		return Provider{}, err
	}
	return p, nil
}

// newSPKey makes the SAML service provider's key and a self-signed
// certificate for its metadata. The key is ECDSA P-256: the metadata then
// offers no encryption key, so IdPs send signed assertions in the clear
// (inside TLS), which this SP checks itself.
func newSPKey(name string, now time.Time) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "relais SAML SP " + name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return key, der, err
}

func recordAdmin(ctx context.Context, tx *store.Tx, action, objType, objID string, details map[string]any) error {
	_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: action, ObjectType: objType, ObjectID: objID, Details: details})
	return err
}

const providerColumns = `id, name, kind, enabled, config, secret_enc, sp_key_enc, sp_cert, created_at, updated_at`

func scanProvider(tenantID string, sc interface{ Scan(...any) error }) (Provider, error) {
	p := Provider{TenantID: tenantID}
	var cfg string
	var created, updated int64
	if err := sc.Scan(&p.ID, &p.Name, &p.Kind, &p.Enabled, &cfg, &p.secretEnc, &p.spKeyEnc, &p.spCert, &created, &updated); err != nil {
		return Provider{}, err
	}
	if err := json.Unmarshal([]byte(cfg), &p.Config); err != nil {
		return Provider{}, fmt.Errorf("provider %s: config: %w", p.Name, err)
	}
	p.HasSecret = len(p.secretEnc) > 0
	p.CreatedAt, p.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	return p, nil
}

// GetProvider returns a provider by name or id.
func (s *Service) GetProvider(ctx context.Context, tenantID, ref string) (Provider, error) {
	var p Provider
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		p, err = getProvider(ctx, tx, ref)
		return err
	})
	return p, err
}

func getProvider(ctx context.Context, tx *store.Tx, ref string) (Provider, error) {
	p, err := scanProvider(tx.TenantID(), tx.QueryRow(ctx, `SELECT `+providerColumns+` FROM sso_providers WHERE tenant_id = $1 AND (name = $2 OR id = $2)`, ref))
	if errors.Is(err, store.ErrNotFound) {
		return Provider{}, fmt.Errorf("%w: provider %q", ErrNotFound, truncate(ref, 60))
	}
	return p, err
}

// ListProviders returns a tenant's providers by name.
func (s *Service) ListProviders(ctx context.Context, tenantID string) ([]Provider, error) {
	var out []Provider
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+providerColumns+` FROM sso_providers WHERE tenant_id = $1 ORDER BY name`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			p, err := scanProvider(tenantID, rows)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	return out, err
}

// SetProviderEnabled turns a provider on or off.
func (s *Service) SetProviderEnabled(ctx context.Context, tenantID, ref string, enabled bool) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		p, err := getProvider(ctx, tx, ref)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE sso_providers SET enabled = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2`, p.ID, enabled, micros(s.now())); err != nil {
			return err
		}
		return recordAdmin(ctx, tx, map[bool]string{true: "sso.provider.enable", false: "sso.provider.disable"}[enabled], "sso_provider", p.ID, map[string]any{"name": p.Name})
	})
}

// UpdateConfig replaces a provider's configuration (its kind, name and
// secrets stay).
func (s *Service) UpdateConfig(ctx context.Context, tenantID, ref string, cfg Config, allowHTTP AllowHTTP) (Provider, error) {
	var p Provider
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		if p, err = getProvider(ctx, tx, ref); err != nil {
			return err
		}
		if err := cfg.normalise(p.Kind, bool(allowHTTP)); err != nil {
			return err
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		p.Config, p.UpdatedAt = cfg, s.now().Truncate(time.Microsecond)
		if _, err := tx.Exec(ctx, `UPDATE sso_providers SET config = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2`, p.ID, string(b), micros(p.UpdatedAt)); err != nil {
			return err
		}
		return recordAdmin(ctx, tx, "sso.provider.update", "sso_provider", p.ID, map[string]any{"name": p.Name, "jit": cfg.JIT,
			"accept_idp_mfa": cfg.AcceptIdPMFA, "allow_idp_initiated": cfg.AllowIdPInitiated})
	})
	if err == nil {
		s.forgetDiscovery(p.Config.Issuer)
	}
	return p, err
}

// DeleteProvider removes a provider, its rules and its links.
func (s *Service) DeleteProvider(ctx context.Context, tenantID, ref string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		p, err := getProvider(ctx, tx, ref)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sso_providers WHERE tenant_id = $1 AND id = $2`, p.ID); err != nil {
			return err
		}
		return recordAdmin(ctx, tx, "sso.provider.delete", "sso_provider", p.ID, map[string]any{"name": p.Name})
	})
}

// PasswordLogin reports whether the tenant accepts local passwords (the
// default); it plugs into identity.Service.PasswordLogin.
func (s *Service) PasswordLogin(ctx context.Context, tenantID string) (bool, error) {
	ok := true
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT password_login FROM sso_settings WHERE tenant_id = $1`).Scan(&ok)
		if errors.Is(err, store.ErrNotFound) {
			ok = true
			return nil
		}
		return err
	})
	return ok, err
}

// SetPasswordLogin turns local password sign-in on or off for a tenant.
// Turning it off needs an enabled provider, so that no one is locked out.
func (s *Service) SetPasswordLogin(ctx context.Context, tenantID string, allowed bool) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if !allowed {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM sso_providers WHERE tenant_id = $1 AND enabled`).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return &ValidationError{Field: "password_login", Message: "add and enable an identity provider before turning password sign-in off"}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sso_settings (tenant_id, password_login, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET password_login = $2, updated_at = $3`, allowed, micros(s.now())); err != nil {
			return err
		}
		return recordAdmin(ctx, tx, "sso.settings.update", "tenant", tx.TenantID(), map[string]any{"password_login": allowed})
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// PublicProvider is what the sign-in page may show of a provider.
type PublicProvider struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	LoginURL string `json:"login_url"`
}

// SignInOptions lists a tenant's enabled providers for the sign-in page,
// and whether passwords are accepted. An unknown or disabled tenant gets
// an empty list and passwords on, like any other, so that the answer does
// not tell which tenants exist.
func (s *Service) SignInOptions(ctx context.Context, tenantRef string) ([]PublicProvider, bool, error) {
	out := []PublicProvider{}
	t, err := s.tenant(ctx, tenantRef)
	if errors.Is(err, ErrNotFound) {
		return out, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	ps, err := s.ListProviders(ctx, t.ID)
	if err != nil {
		return nil, false, err
	}
	for _, p := range ps {
		if p.Enabled {
			out = append(out, PublicProvider{Name: p.Name, Kind: p.Kind, LoginURL: "/sso/" + url.PathEscape(t.Slug) + "/" + url.PathEscape(p.Name) + "/login"})
		}
	}
	pw, err := s.PasswordLogin(ctx, t.ID)
	return out, pw, err
}
