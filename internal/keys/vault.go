package keys

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// VaultOptions configure the HashiCorp Vault / OpenBao transit provider.
type VaultOptions struct {
	// Address is the server's base URL, https://vault.example:8200. Plain
	// http is refused unless AllowHTTP (tests against httptest).
	Address string
	// Mount is the transit engine's mount path ("transit").
	Mount string
	// KeyPrefix starts every transit key name: the platform key is
	// KeyPrefix+"platform", a tenant's KeyPrefix+"tenant-"+tenantID.
	KeyPrefix string
	// Token authenticates directly (X-Vault-Token). Otherwise RoleID and
	// SecretID log in with AppRole at auth/<AppRoleMount>/login.
	Token        string
	RoleID       string
	SecretID     string
	AppRoleMount string
	// Namespace is sent as X-Vault-Namespace (Vault Enterprise, OpenBao).
	Namespace string
	// CAFile is a PEM bundle to trust instead of the system roots.
	CAFile string
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// Client replaces the HTTP client (tests).
	Client *http.Client
	// AllowHTTP permits a plain http Address (tests only).
	AllowHTTP bool
}

// Vault is the transit-engine provider: one named transit key per tenant
// (aes256-gcm96, created on first use by the encrypt endpoint's upsert), so
// that deleting that key shreds the tenant. Vault never hands out the transit
// keys; Relais sends it data keys to wrap and unwrap. The contract used is in
// docs/architecture.md ("Vault / OpenBao transit"). It is safe for concurrent
// use.
type Vault struct {
	o      VaultOptions
	base   *url.URL
	client *http.Client

	mu    sync.Mutex
	token string
}

// NewVault checks the options and returns the provider; it does not contact
// the server (use [Vault.Check]).
func NewVault(o VaultOptions) (*Vault, error) {
	u, err := url.Parse(o.Address)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(o.AllowHTTP && u.Scheme == "http")) {
		return nil, errors.New("keys: vault: address must be an https:// URL, such as https://vault.example:8200")
	}
	if o.Mount == "" {
		o.Mount = "transit"
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "relais-"
	}
	if o.AppRoleMount == "" {
		o.AppRoleMount = "approle"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Token == "" && (o.RoleID == "" || o.SecretID == "") {
		return nil, errors.New("keys: vault: set a token, or an AppRole role ID and secret ID")
	}
	c := o.Client
	if c == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile) // #nosec G304 -- the operator names the CA bundle
			if err != nil {
				return nil, fmt.Errorf("keys: vault: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("keys: vault: CA file %s holds no PEM certificate", o.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		c = &http.Client{Transport: tr, Timeout: o.Timeout}
	}
	return &Vault{o: o, base: u, client: c, token: o.Token}, nil
}

// vaultKey is one transit key: the platform's or a tenant's.
type vaultKey struct {
	v    *Vault
	name string
}

// ID is "vault:<mount>/<key name>"; the key version is in each ciphertext.
func (v *Vault) ID() string { return v.platform().ID() }

func (v *Vault) platform() *vaultKey { return &vaultKey{v: v, name: v.o.KeyPrefix + "platform"} }

// ForTenant returns the tenant's transit key.
func (v *Vault) ForTenant(tenantID string) MasterKey {
	return &vaultKey{v: v, name: v.o.KeyPrefix + "tenant-" + tenantID}
}

// Wrap encrypts under the platform transit key.
func (v *Vault) Wrap(ctx context.Context, pt, aad []byte) ([]byte, error) {
	return v.platform().Wrap(ctx, pt, aad)
}

// Unwrap decrypts under the platform transit key.
func (v *Vault) Unwrap(ctx context.Context, w, aad []byte) ([]byte, error) {
	return v.platform().Unwrap(ctx, w, aad)
}

// Rotate makes a new version of the platform transit key.
func (v *Vault) Rotate(ctx context.Context) (string, error) { return v.platform().Rotate(ctx) }

// Rewrap re-encrypts under the platform key's newest version.
func (v *Vault) Rewrap(ctx context.Context, w, aad []byte) ([]byte, error) {
	return v.platform().Rewrap(ctx, w, aad)
}

// Check logs in if needed and reads the platform key's state: a sealed,
// unreachable or misconfigured Vault fails here, at start-up.
func (v *Vault) Check(ctx context.Context) error {
	var out struct{}
	err := v.call(ctx, http.MethodGet, "sys/health", nil, &out)
	if err != nil {
		var ve *VaultError
		// 429 (standby), 472/473 (performance standby/DR) are healthy enough.
		if errors.As(err, &ve) && (ve.Status == 429 || ve.Status == 472 || ve.Status == 473) {
			return nil
		}
	}
	return err
}

// String describes the provider without secrets.
func (v *Vault) String() string { return "keys.Vault(" + v.base.Host + "/" + v.o.Mount + ")" }

// LogValue makes [log/slog] record no token.
func (v *Vault) LogValue() slog.Value { return slog.StringValue(v.String()) }

func (k *vaultKey) ID() string { return "vault:" + k.v.o.Mount + "/" + k.name }

func (k *vaultKey) String() string { return "keys.vaultKey(" + k.ID() + ")" }

// vaultCiphertextPrefix starts every transit ciphertext ("vault:v3:...").
const vaultCiphertextPrefix = "vault:v"

func (k *vaultKey) Wrap(ctx context.Context, pt, aad []byte) ([]byte, error) {
	if len(pt) > maxWrapPlaintext {
		return nil, fmt.Errorf("keys: vault wrap with %s: %d bytes to wrap, at most %d", k.ID(), len(pt), maxWrapPlaintext)
	}
	in := map[string]string{
		"plaintext":       base64.StdEncoding.EncodeToString(pt),
		"associated_data": base64.StdEncoding.EncodeToString(aad),
	}
	var out struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := k.v.call(ctx, http.MethodPost, k.v.o.Mount+"/encrypt/"+url.PathEscape(k.name), in, &out); err != nil {
		return nil, fmt.Errorf("keys: vault wrap with %s: %w", k.ID(), err)
	}
	ct := out.Data.Ciphertext
	if !strings.HasPrefix(ct, vaultCiphertextPrefix) || len(ct) > maxWrapped*2 {
		return nil, fmt.Errorf("keys: vault wrap with %s: the server returned no transit ciphertext: %w", k.ID(), ErrFormat)
	}
	return []byte(ct), nil
}

func (k *vaultKey) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if !strings.HasPrefix(string(wrapped), vaultCiphertextPrefix) || len(wrapped) > maxWrapped*2 {
		return nil, fmt.Errorf("keys: vault unwrap with %s: not a transit ciphertext: %w", k.ID(), ErrFormat)
	}
	in := map[string]string{
		"ciphertext":      string(wrapped),
		"associated_data": base64.StdEncoding.EncodeToString(aad),
	}
	var out struct {
		Data struct {
			Plaintext string `json:"plaintext"`
		} `json:"data"`
	}
	if err := k.v.call(ctx, http.MethodPost, k.v.o.Mount+"/decrypt/"+url.PathEscape(k.name), in, &out); err != nil {
		var ve *VaultError
		if errors.As(err, &ve) && ve.Status == http.StatusBadRequest {
			// Transit answers 400 for a ciphertext that does not
			// authenticate, and for a key that does not exist (destroyed).
			return nil, fmt.Errorf("keys: vault unwrap with %s (%s): %w", k.ID(), ve.Message, ErrDecrypt)
		}
		return nil, fmt.Errorf("keys: vault unwrap with %s: %w", k.ID(), err)
	}
	pt, err := base64.StdEncoding.DecodeString(out.Data.Plaintext)
	if err != nil || len(pt) > maxWrapPlaintext {
		clear(pt)
		return nil, fmt.Errorf("keys: vault unwrap with %s: the server returned no valid plaintext: %w", k.ID(), ErrFormat)
	}
	return pt, nil
}

// Rewrap decrypts then encrypts again through Vault (transit's own rewrap
// endpoint does not take associated data), so the key's newest version is
// used.
func (k *vaultKey) Rewrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	pt, err := k.Unwrap(ctx, wrapped, aad)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return k.Wrap(ctx, pt, aad)
}

// Rotate makes a new version of the transit key.
func (k *vaultKey) Rotate(ctx context.Context) (string, error) {
	if err := k.v.call(ctx, http.MethodPost, k.v.o.Mount+"/keys/"+url.PathEscape(k.name)+"/rotate", map[string]string{}, nil); err != nil {
		return "", fmt.Errorf("keys: vault rotate %s: %w", k.ID(), err)
	}
	return k.ID(), nil
}

// Destroy allows deletion of the transit key, then deletes it: every
// ciphertext it made, in the store or in backups, is then undecryptable. A
// key that does not exist is not an error.
func (k *vaultKey) Destroy(ctx context.Context) error {
	p := k.v.o.Mount + "/keys/" + url.PathEscape(k.name)
	err := k.v.call(ctx, http.MethodPost, p+"/config", map[string]any{"deletion_allowed": true}, nil)
	var ve *VaultError
	if err != nil && !(errors.As(err, &ve) && (ve.Status == http.StatusNotFound || ve.Status == http.StatusBadRequest)) {
		return fmt.Errorf("keys: vault destroy %s: %w", k.ID(), err)
	}
	if err := k.v.call(ctx, http.MethodDelete, p, nil, nil); err != nil && !(errors.As(err, &ve) && ve.Status == http.StatusNotFound) {
		return fmt.Errorf("keys: vault destroy %s: %w", k.ID(), err)
	}
	return nil
}

// VaultError is an error answer of the Vault API. Message holds the server's
// errors list, which Vault guarantees carries no secret.
type VaultError struct {
	Status  int
	Message string
}

func (e *VaultError) Error() string {
	switch e.Status {
	case http.StatusServiceUnavailable:
		return "vault is sealed or unavailable (HTTP 503): unseal it, then retry: " + e.Message
	case http.StatusForbidden:
		return "vault refused the token (HTTP 403): check the token or AppRole and its policy: " + e.Message
	}
	return fmt.Sprintf("vault answered HTTP %d: %s", e.Status, e.Message)
}

// maxVaultResponse bounds what is read of one Vault answer.
const maxVaultResponse = 1 << 20

// call sends one request and decodes data into out. It logs in with AppRole
// when there is no token, and once more on 403 (an expired token).
func (v *Vault) call(ctx context.Context, method, path string, in, out any) error {
	err := v.call1(ctx, method, path, in, out)
	var ve *VaultError
	if errors.As(err, &ve) && ve.Status == http.StatusForbidden && v.o.RoleID != "" {
		v.mu.Lock()
		v.token = ""
		v.mu.Unlock()
		err = v.call1(ctx, method, path, in, out)
	}
	return err
}

func (v *Vault) call1(ctx context.Context, method, path string, in, out any) error {
	tok, err := v.currentToken(ctx)
	if err != nil {
		return err
	}
	return v.do(ctx, method, path, tok, in, out)
}

func (v *Vault) currentToken(ctx context.Context) (string, error) {
	v.mu.Lock()
	tok := v.token
	v.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	var out struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	in := map[string]string{"role_id": v.o.RoleID, "secret_id": v.o.SecretID}
	if err := v.do(ctx, http.MethodPost, "auth/"+v.o.AppRoleMount+"/login", "", in, &out); err != nil {
		// Not wrapped: a refused login is not a refused decryption.
		return "", fmt.Errorf("vault AppRole login failed (check the role ID and secret ID): %v", err)
	}
	if out.Auth.ClientToken == "" {
		return "", errors.New("vault AppRole login: no client token in the answer")
	}
	v.mu.Lock()
	v.token = out.Auth.ClientToken
	v.mu.Unlock()
	return out.Auth.ClientToken, nil
}

func (v *Vault) do(ctx context.Context, method, path, tok string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := v.base.JoinPath("v1", path) // #nosec G125 -- path is the configured mount and fixed endpoint names, with key names passed through url.PathEscape
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("X-Vault-Token", tok)
	}
	if v.o.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", v.o.Namespace)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		// The URL error names the server, never the token (a header).
		return fmt.Errorf("vault unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxVaultResponse))
	if err != nil {
		return fmt.Errorf("vault: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Errors []string `json:"errors"`
		}
		_ = json.Unmarshal(raw, &e)
		msg := strings.Join(e.Errors, "; ")
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return &VaultError{Status: resp.StatusCode, Message: msg}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("vault answered something that is not the expected JSON: %w", ErrFormat)
	}
	return nil
}
