// Package optoken manages operator API tokens: bearer secrets that let the
// platform's operator script tenant administration over the HTTPS API
// (/api/v1/tenants). Only a SHA-256 of each token is stored; the token is
// shown once, at creation. Tokens are 256-bit random values, so a plain hash
// (not a password hash) is the right tool: there is nothing to brute-force.
package optoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Prefix starts every operator token, so that secret scanners can find a
// leaked one.
const Prefix = "rlo_"

// ErrInvalid is returned for a missing, malformed, unknown or revoked token.
var ErrInvalid = errors.New("invalid operator token")

// Token describes a stored token (never its secret).
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func hashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Create makes a token and returns its description and its secret; the
// secret cannot be recovered later.
func Create(ctx context.Context, db *store.DB, name string) (Token, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return Token{}, "", errors.New("token name must be 1 to 100 characters")
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	secret := Prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	id, err := uuid.NewV7()
	if err != nil {
		return Token{}, "", fmt.Errorf("token id: %w", err)
	}
	t := Token{ID: id.String(), Name: name}
	err = db.Platform(ctx, func(p *store.PlatformTx) error {
		t.CreatedAt = p.Now().UTC().Truncate(time.Microsecond)
		if _, err := p.Exec(ctx, `INSERT INTO operator_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)`,
			t.ID, t.Name, hashToken(secret), store.Micros(t.CreatedAt)); err != nil {
			return fmt.Errorf("store operator token: %w", err)
		}
		_, err := audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "operator_token.create",
			ObjectType: "operator_token", ObjectID: t.ID, Changes: []audit.Change{{Field: "name", After: t.Name}}})
		return err
	})
	if err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// Authenticate returns the token a secret belongs to, or ErrInvalid.
// The lookup is by hash, so timing reveals nothing about the secret.
func Authenticate(ctx context.Context, db *store.DB, secret string) (Token, error) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 100 {
		return Token{}, ErrInvalid
	}
	var t Token
	var created int64
	var revoked *int64
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		return p.QueryRow(ctx, `SELECT id, name, created_at, revoked_at FROM operator_tokens WHERE token_hash = $1`,
			hashToken(secret)).Scan(&t.ID, &t.Name, &created, &revoked)
	})
	if errors.Is(err, store.ErrNotFound) {
		return Token{}, ErrInvalid
	}
	if err != nil {
		return Token{}, fmt.Errorf("look up operator token: %w", err)
	}
	if revoked != nil {
		return Token{}, ErrInvalid
	}
	t.CreatedAt = store.FromMicros(created)
	return t, nil
}

// List returns every token, newest first.
func List(ctx context.Context, db *store.DB) ([]Token, error) {
	var out []Token
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT id, name, created_at, revoked_at FROM operator_tokens ORDER BY created_at DESC`)
		if err != nil {
			return fmt.Errorf("list operator tokens: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var t Token
			var created int64
			var revoked *int64
			if err := rows.Scan(&t.ID, &t.Name, &created, &revoked); err != nil {
				return fmt.Errorf("list operator tokens: %w", err)
			}
			t.CreatedAt = store.FromMicros(created)
			if revoked != nil {
				r := store.FromMicros(*revoked)
				t.RevokedAt = &r
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// Revoke disables a token at once.
func Revoke(ctx context.Context, db *store.DB, id string) error {
	return db.Platform(ctx, func(p *store.PlatformTx) error {
		res, err := p.Exec(ctx, `UPDATE operator_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, store.Micros(p.Now()), id)
		if err != nil {
			return fmt.Errorf("revoke operator token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no active operator token with id %q (see `relais operator token list`)", id)
		}
		_, err = audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "operator_token.revoke",
			ObjectType: "operator_token", ObjectID: id})
		return err
	})
}
