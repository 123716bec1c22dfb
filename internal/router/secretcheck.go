package router

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// ErrNoSuchSecret reports a field that the connector's configuration does
// not hold (or that is not a string).
var ErrNoSuchSecret = errors.New("no such secret in the connector's configuration")

// CheckSecret tells whether candidate is the secret stored in the connector's
// configuration at field (a dotted JSON path such as "password" or
// "dkim.private_key_pem"), in constant time, without returning the secret
// (DATA-3). It also returns the stored secret's key-check value, which an
// administrator may note to recognise it later. The check is audited.
func (c *Connectors) CheckSecret(ctx context.Context, tenantID, ref, field string, candidate []byte) (bool, string, error) {
	var id string
	var sealed []byte
	err := c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, config_enc FROM connectors WHERE tenant_id = $1 AND (id = $2 OR name = $2)`, ref).Scan(&id, &sealed)
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, "", &ValidationError{Field: "connector", Message: fmt.Sprintf("no connector %q", ref)}
	}
	if err != nil {
		return false, "", err
	}
	crypto, err := c.Service.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return false, "", err
	}
	raw, err := crypto.Open("connector.config", sealed)
	if err != nil {
		return false, "", fmt.Errorf("connector %q: decrypt configuration: %w", id, err)
	}
	defer clear(raw)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, "", fmt.Errorf("connector %q: configuration: %w", id, err)
	}
	for _, part := range strings.Split(field, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false, "", ErrNoSuchSecret
		}
		v = m[part]
	}
	stored, ok := v.(string)
	if !ok || stored == "" {
		return false, "", ErrNoSuchSecret
	}
	match := subtle.ConstantTimeCompare([]byte(stored), candidate) == 1
	kcv := crypto.CheckValue("connector."+field, []byte(stored))
	err = c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAccess, Action: "connector.secret.check", ObjectType: "connector",
			ObjectID: id, Details: map[string]any{"field": field, "match": match}})
		return err
	})
	if err != nil {
		return false, "", err
	}
	return match, kcv, nil
}
