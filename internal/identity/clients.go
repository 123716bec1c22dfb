package identity

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// APIClient is a service account of the API (AUTH-8).
type APIClient struct {
	ID           string     `json:"client_id"`
	TenantID     string     `json:"tenant_id"`
	Name         string     `json:"name"`
	Status       string     `json:"status"`
	TokenVersion int        `json:"-"`
	AllowCIDRs   []string   `json:"allow_cidrs"`
	CreatedAt    time.Time  `json:"created_at"`
	LastUsedAt   *time.Time `json:"last_used_at,omitempty"`
}

// CreateClient makes a service account and returns its secret, shown once.
// The secret is 256 random bits: a SHA-256 of it is all that is stored.
func (s *Service) CreateClient(ctx context.Context, tenantID, name string, allow []string) (APIClient, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return APIClient{}, "", &ValidationError{Field: "name", Message: "must be 1 to 100 characters"}
	}
	for _, c := range allow {
		if _, err := netip.ParsePrefix(c); err != nil {
			return APIClient{}, "", &ValidationError{Field: "allow_cidrs", Message: fmt.Sprintf("%q is not a CIDR prefix", c)}
		}
	}
	if allow == nil {
		allow = []string{}
	}
	cidrs, _ := json.Marshal(allow)
	idSecret := newSecret(prefixClient, tenantID)
	// The client id needs no secrecy: keep it short (tenant + 16 hex).
	sum := hashSecret(idSecret)
	id := prefixClient + tenantID + "." + hex.EncodeToString(sum[:8])
	secret := newSecret(prefixSecret, tenantID)
	now := s.now().Truncate(time.Microsecond)
	cl := APIClient{ID: id, TenantID: tenantID, Name: name, Status: StatusActive, TokenVersion: 1, AllowCIDRs: allow, CreatedAt: now}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_clients (tenant_id, id, name, secret_hash, status, allow_cidrs, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'active', $5, $6, $6)`, id, name, hex.EncodeToString(hashSecret(secret)), string(cidrs), micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a client named %q exists", ErrConflict, name)
		}
		if err != nil {
			return fmt.Errorf("insert client: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "client.create", ObjectType: "api_client", ObjectID: id,
			Changes: []audit.Change{{Field: "name", After: name}, {Field: "allow_cidrs", After: allow}}})
		return err
	})
	if err != nil {
		return APIClient{}, "", err
	}
	return cl, secret, nil
}

// ClientTenant returns the tenant a client id belongs to.
func ClientTenant(clientID string) (string, bool) {
	rest, ok := strings.CutPrefix(clientID, prefixClient)
	if !ok || len(clientID) > 120 {
		return "", false
	}
	t, h, ok := strings.Cut(rest, ".")
	if !ok || t == "" || len(h) != 16 {
		return "", false
	}
	return t, true
}

// AuthenticateClient checks a client id and secret (constant time) and the
// source address against the client's and the tenant's API allow-lists.
// Every attempt is recorded.
func (s *Service) AuthenticateClient(ctx context.Context, clientID, secret string, c Client) (APIClient, error) {
	tenantID, ok := ClientTenant(clientID)
	if !ok || len(secret) > 200 {
		_ = s.recordIn(ctx, "", "auth.token", outcomeFailure, "malformed_client", MethodToken, truncateID(clientID), "", c)
		return APIClient{}, ErrInvalidCredentials
	}
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		_ = s.recordIn(ctx, "", "auth.token", outcomeFailure, "unknown_tenant", MethodToken, truncateID(clientID), "", c)
		return APIClient{}, ErrInvalidCredentials
	}
	var cl APIClient
	var stored, cidrs string
	var created int64
	var lastUsed *int64
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, name, status, token_version, allow_cidrs, secret_hash, created_at, last_used_at
			FROM api_clients WHERE tenant_id = $1 AND id = $2`, clientID).Scan(&cl.ID, &cl.Name, &cl.Status, &cl.TokenVersion, &cidrs, &stored, &created, &lastUsed)
	})
	given := hex.EncodeToString(hashSecret(secret))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return APIClient{}, fmt.Errorf("authenticate client: %w", err)
	}
	match := subtle.ConstantTimeCompare([]byte(given), []byte(stored)) == 1 && err == nil
	reason := ""
	switch {
	case !match:
		reason = "bad_secret"
	case cl.Status != StatusActive:
		reason = "client_disabled"
	}
	if reason == "" {
		_ = json.Unmarshal([]byte(cidrs), &cl.AllowCIDRs)
		if !allowed(cl.AllowCIDRs, c.IP) || !allowed(pol.Network.APIAllow, c.IP) {
			reason = "ip_not_allowed"
		}
	}
	if reason != "" {
		if rerr := s.recordIn(ctx, tenantID, "auth.token", outcomeFailure, reason, MethodToken, truncateID(clientID), "", c); rerr != nil {
			return APIClient{}, rerr
		}
		if reason == "ip_not_allowed" {
			return APIClient{}, ErrIPNotAllowed
		}
		return APIClient{}, ErrInvalidCredentials
	}
	cl.TenantID, cl.CreatedAt, cl.LastUsedAt = tenantID, store.FromMicros(created), fromMicrosPtr(lastUsed)
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE api_clients SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2`, clientID, micros(s.now())); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "auth.token", ObjectType: "api_client", ObjectID: clientID,
			Actor: audit.Actor{Type: audit.ActorAPI, ID: clientID}, IP: c.IP, UserAgent: c.UserAgent,
			Details: map[string]any{"outcome": outcomeSuccess, "reason": "ok", "method": MethodToken, "username": clientID, "source_port": c.Port}})
		return err
	})
	return cl, err
}

func truncateID(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}

// ClientVersion returns a client's status and token version, for token
// revocation checks.
func (s *Service) ClientVersion(ctx context.Context, tenantID, clientID string) (active bool, version int, err error) {
	var status string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT status, token_version FROM api_clients WHERE tenant_id = $1 AND id = $2`, clientID).Scan(&status, &version)
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("client version: %w", err)
	}
	return status == StatusActive, version, nil
}

// SetClientStatus disables (revoking every token at once, ACC-5) or enables
// a client.
func (s *Service) SetClientStatus(ctx context.Context, tenantID, clientID, status string) error {
	if status != StatusActive && status != StatusDisabled {
		return &ValidationError{Field: "status", Message: "must be active or disabled"}
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE api_clients SET status = $3, token_version = token_version + 1, updated_at = $4 WHERE tenant_id = $1 AND id = $2`,
			clientID, status, micros(s.now()))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: client %q", ErrNotFound, clientID)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "client." + map[string]string{StatusActive: "enable", StatusDisabled: "disable"}[status],
			ObjectType: "api_client", ObjectID: clientID, Changes: []audit.Change{{Field: "status", After: status}}})
		return err
	})
}

// BumpClientVersion revokes a client's outstanding tokens (after a change
// of its roles).
func (s *Service) BumpClientVersion(ctx context.Context, tenantID, clientID string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE api_clients SET token_version = token_version + 1 WHERE tenant_id = $1 AND id = $2`, clientID)
		return err
	})
}

// ListClients returns the tenant's API clients.
func (s *Service) ListClients(ctx context.Context, tenantID string) ([]APIClient, error) {
	var out []APIClient
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, status, token_version, allow_cidrs, created_at, last_used_at FROM api_clients WHERE tenant_id = $1 ORDER BY name`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var cl APIClient
			var cidrs string
			var created int64
			var last *int64
			if err := rows.Scan(&cl.ID, &cl.Name, &cl.Status, &cl.TokenVersion, &cidrs, &created, &last); err != nil {
				return err
			}
			_ = json.Unmarshal([]byte(cidrs), &cl.AllowCIDRs)
			cl.TenantID, cl.CreatedAt, cl.LastUsedAt = tenantID, store.FromMicros(created), fromMicrosPtr(last)
			out = append(out, cl)
		}
		return rows.Err()
	})
	return out, wrap("list clients", err)
}

// ClientPermissions returns the permissions a client holds now (the scopes
// its tokens may carry).
func (s *Service) ClientPermissions(ctx context.Context, tenantID, clientID string) ([]string, error) {
	if s.Perms == nil {
		return nil, nil
	}
	return s.Perms.ClientPermissionList(ctx, tenantID, clientID)
}
