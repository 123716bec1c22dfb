package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/mod/sumdb/note"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// keyAADPrefix, followed by the log's origin and public key, is the
// associated data that binds a wrapped signing key to its log.
const keyAADPrefix = "relais/audit-signing-key/v1|"

// OperatorOrigin is the origin (and signing key name) of the operator's log.
const OperatorOrigin = "relais-audit/operator"

// ErrNoKey reports a log that has no signing key yet.
var ErrNoKey = errors.New("audit: the log has no signing key yet")

// Origin is the checkpoint origin and signing key name of a tenant's log
// ("" is the operator's log).
func Origin(tenantID string) (string, error) {
	if tenantID == "" {
		return OperatorOrigin, nil
	}
	if len(tenantID) > 200 || strings.ContainsAny(tenantID, "+/") || strings.IndexFunc(tenantID, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return "", fmt.Errorf("audit: tenant id %q cannot name a signing key", tenantID)
	}
	return "relais-audit/" + tenantID, nil
}

// signingKey is a log's stored key: the public half in clear, the private
// seed wrapped by the master key.
type signingKey struct {
	name     string
	pub      ed25519.PublicKey
	masterID string
	wrapped  []byte
}

func keyAAD(name string, pub []byte) []byte {
	return []byte(keyAADPrefix + name + "|" + base64.StdEncoding.EncodeToString(pub))
}

// verifierKey is the note verifier key ("name+hash+key") of the public key.
func (k signingKey) verifierKey() (string, error) {
	v, err := note.NewEd25519VerifierKey(k.name, k.pub)
	if err != nil {
		return "", fmt.Errorf("audit: the log's public key: %w", err)
	}
	return v, nil
}

func (k signingKey) verifier() (note.Verifier, error) {
	vk, err := k.verifierKey()
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vk)
	if err != nil {
		return nil, fmt.Errorf("audit: the log's public key: %w", err)
	}
	return v, nil
}

// open unwraps the private key and checks that it is the stored public
// key's: a key row copied from another log, or a public key replaced in the
// store, does not open.
func (k signingKey) open(ctx context.Context, mk keys.MasterKey) (*noteSigner, error) {
	if mk == nil {
		return nil, errors.New("audit: no master key to open the log's signing key")
	}
	seed, err := mk.Unwrap(ctx, k.wrapped, keyAAD(k.name, k.pub))
	if err != nil {
		return nil, fmt.Errorf("audit: the signing key of %s (wrapped by master key %s) does not unwrap under master key %s: it was replaced or altered: %w", k.name, k.masterID, mk.ID(), err)
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit: the signing key of %s is malformed", k.name)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if pub, ok := priv.Public().(ed25519.PublicKey); !ok || !pub.Equal(k.pub) {
		return nil, fmt.Errorf("audit: the signing key of %s does not match its stored public key", k.name)
	}
	v, err := k.verifier()
	if err != nil {
		return nil, err
	}
	return &noteSigner{name: k.name, hash: v.KeyHash(), priv: priv}, nil
}

// noteSigner signs notes with an Ed25519 key (note.Signer).
type noteSigner struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
}

// Name is the key name.
func (s *noteSigner) Name() string { return s.name }

// KeyHash is the note key hash.
func (s *noteSigner) KeyHash() uint32 { return s.hash }

// Sign signs msg.
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.priv, msg), nil }

// loadKey reads the log's signing key.
func loadKey(ctx context.Context, tx *store.Tx) (signingKey, error) {
	var k signingKey
	var pub []byte
	err := tx.QueryRow(ctx, `SELECT name, public_key, master_key_id, private_wrap FROM audit_signing_keys WHERE tenant_id = $1`).
		Scan(&k.name, &pub, &k.masterID, &k.wrapped)
	if errors.Is(err, store.ErrNotFound) {
		return signingKey{}, ErrNoKey
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("audit: read the signing key: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return signingKey{}, fmt.Errorf("audit: the stored public key is %d bytes", len(pub))
	}
	k.pub = pub
	return k, nil
}

// ensureKey returns the log's signing key, creating it on first use (with
// a key event in the log).
func ensureKey(ctx context.Context, tx *store.Tx, mk keys.MasterKey) (signingKey, error) {
	k, err := loadKey(ctx, tx)
	if !errors.Is(err, ErrNoKey) {
		return k, err
	}
	if mk == nil {
		return signingKey{}, errors.New("audit: no master key to create the log's signing key")
	}
	name, err := Origin(tx.TenantID())
	if err != nil {
		return signingKey{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return signingKey{}, fmt.Errorf("audit: generate a signing key: %w", err)
	}
	seed := priv.Seed()
	defer clear(seed)
	defer clear(priv)
	wrapped, err := mk.Wrap(ctx, seed, keyAAD(name, pub))
	if err != nil {
		return signingKey{}, fmt.Errorf("audit: wrap the signing key: %w", err)
	}
	res, err := tx.Exec(ctx, `INSERT INTO audit_signing_keys (tenant_id, name, public_key, master_key_id, private_wrap, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO NOTHING`, name, []byte(pub), mk.ID(), wrapped, store.Micros(tx.Now()))
	if err != nil {
		return signingKey{}, fmt.Errorf("audit: store the signing key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		k = signingKey{name: name, pub: pub, masterID: mk.ID(), wrapped: wrapped}
		vk, err := k.verifierKey()
		if err != nil {
			return signingKey{}, err
		}
		if _, err := Append(ctx, tx, Event{Category: CategoryKey, Action: "audit_signing_key.create", ObjectType: "audit_signing_key",
			ObjectID: name, Details: map[string]any{"algorithm": "Ed25519", "verifier_key": vk, "master_key_id": mk.ID()}}); err != nil {
			return signingKey{}, err
		}
		return k, nil
	}
	// Another transaction created it first.
	return loadKey(ctx, tx)
}

// sameKey reports whether a verifier key names the same key as k.
func (k signingKey) sameKey(vkey string) bool {
	mine, err := k.verifierKey()
	return err == nil && strings.TrimSpace(vkey) == mine
}
