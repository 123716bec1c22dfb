package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/store"
)

// ConnectorInfo describes a stored connector; Config is the redacted copy
// (DATA-3: secrets are never shown back in full).
type ConnectorInfo struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Channel   string          `json:"channel"`
	Status    string          `json:"status"`
	Config    json.RawMessage `json:"config"`
	CreatedAt time.Time       `json:"created_at"`
}

// Connectors manages a tenant's connectors and routes.
type Connectors struct {
	Service *Service
	// Open validates a configuration by opening it (connectors.Open).
	Open OpenFunc
	// Redact returns the configuration with its secrets masked
	// (connectors.Redact).
	Redact func(kind string, raw json.RawMessage) (json.RawMessage, error)

	mu   sync.Mutex
	open map[string]connectors.Connector
}

// AddConnector validates and stores a connector. The configuration is
// sealed with the tenant's key; a redacted copy is kept for display.
func (c *Connectors) AddConnector(ctx context.Context, tenantID, name, kind string, config json.RawMessage) (ConnectorInfo, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 {
		return ConnectorInfo{}, &ValidationError{Field: "name", Message: "must be 1 to 64 characters"}
	}
	conn, err := c.Open(kind, config)
	if err != nil {
		if errors.Is(err, connectors.ErrConfig) {
			return ConnectorInfo{}, &ValidationError{Field: "config", Message: err.Error()}
		}
		return ConnectorInfo{}, &ValidationError{Field: "config", Message: err.Error()}
	}
	caps := conn.Capabilities()
	_ = conn.Close()
	if len(caps.Channels) != 1 {
		return ConnectorInfo{}, &ValidationError{Field: "kind", Message: "a connector serves exactly one channel"}
	}
	public, err := c.Redact(kind, config)
	if err != nil {
		return ConnectorInfo{}, fmt.Errorf("redact connector configuration: %w", err)
	}
	crypto, err := c.Service.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return ConnectorInfo{}, err
	}
	sealed, err := crypto.Seal("connector.config", config)
	if err != nil {
		return ConnectorInfo{}, err
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return ConnectorInfo{}, err
	}
	info := ConnectorInfo{ID: uid.String(), Name: name, Kind: kind, Channel: caps.Channels[0], Status: "active", Config: public}
	err = c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := tx.Now().UTC().Truncate(time.Microsecond)
		info.CreatedAt = now
		_, err := tx.Exec(ctx, `INSERT INTO connectors (tenant_id, id, name, kind, channel, config_enc, config_public, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8)`, info.ID, name, kind, info.Channel, sealed, string(public), store.Micros(now))
		if store.IsUniqueViolation(err) {
			return &ValidationError{Field: "name", Message: fmt.Sprintf("a connector named %q exists", name)}
		}
		if err != nil {
			return fmt.Errorf("insert connector: %w", err)
		}
		// The first connector of a channel becomes its route.
		if _, err := tx.Exec(ctx, `INSERT INTO routes (tenant_id, channel, primary_id, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, channel) DO NOTHING`, info.Channel, info.ID, store.Micros(now)); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "connector.create", ObjectType: "connector", ObjectID: info.ID,
			Changes: []audit.Change{{Field: "name", After: name}, {Field: "kind", After: kind}, {Field: "config", After: json.RawMessage(public)}}})
		return err
	})
	if err != nil {
		return ConnectorInfo{}, err
	}
	return info, nil
}

// ListConnectors returns a tenant's connectors (redacted).
func (c *Connectors) ListConnectors(ctx context.Context, tenantID string) ([]ConnectorInfo, error) {
	var out []ConnectorInfo
	err := c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, kind, channel, status, config_public, created_at FROM connectors WHERE tenant_id = $1 ORDER BY name`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var i ConnectorInfo
			var public string
			var created int64
			if err := rows.Scan(&i.ID, &i.Name, &i.Kind, &i.Channel, &i.Status, &public, &created); err != nil {
				return err
			}
			i.Config, i.CreatedAt = json.RawMessage(public), store.FromMicros(created)
			out = append(out, i)
		}
		return rows.Err()
	})
	return out, err
}

// SetRoute sets the connectors of a channel (MSG-2): primary, and an
// optional secondary used after a connector failure.
func (c *Connectors) SetRoute(ctx context.Context, tenantID, channel, primaryRef, secondaryRef string) error {
	return c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		resolve := func(ref string) (string, error) {
			var id, ch string
			err := tx.QueryRow(ctx, `SELECT id, channel FROM connectors WHERE tenant_id = $1 AND (id = $2 OR name = $2)`, ref).Scan(&id, &ch)
			if errors.Is(err, store.ErrNotFound) {
				return "", fmt.Errorf("%w: connector %q", ErrNotFound, ref)
			}
			if err != nil {
				return "", err
			}
			if ch != channel {
				return "", &ValidationError{Field: "connector", Message: fmt.Sprintf("connector %q sends %s, not %s", ref, ch, channel)}
			}
			return id, nil
		}
		p, err := resolve(primaryRef)
		if err != nil {
			return err
		}
		var sec any
		if secondaryRef != "" {
			s, err := resolve(secondaryRef)
			if err != nil {
				return err
			}
			sec = s
		}
		now := store.Micros(tx.Now())
		if _, err := tx.Exec(ctx, `INSERT INTO routes (tenant_id, channel, primary_id, secondary_id, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, channel) DO UPDATE SET primary_id = $3, secondary_id = $4, updated_at = $5`, channel, p, sec, now); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "route.set", ObjectType: "route", ObjectID: channel,
			Changes: []audit.Change{{Field: "primary", After: p}, {Field: "secondary", After: sec}}})
		return err
	})
}

// Opened returns the tenant's connector, opened from its sealed
// configuration and kept open while the configuration does not change
// (callback parsers keep their replay memory in the instance).
func (c *Connectors) Opened(ctx context.Context, tenantID, connectorID string) (connectors.Connector, error) {
	var kind string
	var sealed []byte
	var updated int64
	err := c.Service.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT kind, config_enc, updated_at FROM connectors WHERE tenant_id = $1 AND id = $2 AND status = 'active'`,
			connectorID).Scan(&kind, &sealed, &updated)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: connector %q", ErrNotFound, connectorID)
	}
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s|%s|%d", tenantID, connectorID, updated)
	c.mu.Lock()
	if conn, ok := c.open[key]; ok {
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	crypto, err := c.Service.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	raw, err := crypto.Open("connector.config", sealed)
	if err != nil {
		return nil, fmt.Errorf("connector %q: decrypt configuration: %w", connectorID, err)
	}
	conn, err := c.Open(kind, raw)
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", connectorID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		c.open = map[string]connectors.Connector{}
	}
	if old, ok := c.open[key]; ok {
		_ = conn.Close()
		return old, nil
	}
	c.open[key] = conn
	return conn, nil
}
