package contacts

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Signed links. A token is
//
//	prefix || base64url(payload) || "." || base64url(HMAC-SHA256(key, prefix || payload))
//
// with prefix "rc1." (double opt-in confirmation) or "ru1." (unsubscribe),
// payload a small JSON object (tenant id, contact id, channel, purpose,
// issued-at; for confirmations the pending consent event and the expiry).
// The tenant id is read before the MAC is checked only to pick the tenant's
// key; nothing else is trusted before. The payload holds no personal data:
// ids only.
//
// The key is per tenant. Until internal/tenants exposes a dedicated MAC key
// (see tokenKey), it is derived from the tenant's blind-index key through a
// reserved label that no stored field uses.
const (
	prefixConfirm = "rc1."
	prefixUnsub   = "ru1."
	maxTokenLen   = 1024
	kindConfirm   = "confirm"
	kindUnsub     = "unsubscribe"
)

type tokenClaims struct {
	Kind    string  `json:"k"`
	Tenant  string  `json:"t"`
	Contact string  `json:"c"`
	Channel Channel `json:"ch"`
	Purpose string  `json:"p"`
	Event   string  `json:"e,omitempty"`
	Iat     int64   `json:"i"`
	Exp     int64   `json:"x,omitempty"`
}

// tokenKey is the tenant's key for signed links. STOPGAP: HKDF-SHA256 of
// the tenant's blind index of a reserved label (an HMAC under the
// blind-index subkey, so a PRF output of the data key), info
// "relais/contacts/link/v1". The clean version is a subkey derived from the
// data key with its own HKDF info in internal/keys, exposed as
// tenants.Crypto.MACKey(purpose).
func tokenKey(cr *tenants.Crypto) []byte {
	ikm := cr.Index("relais/reserved/link-key/v1", "")
	k, err := hkdf.Key(sha256.New, ikm, nil, "relais/contacts/link/v1", 32)
	if err != nil { // only for an invalid length, which 32 is not
		panic(fmt.Sprintf("contacts: derive link key: %v", err))
	}
	return k
}

func tokenMAC(key []byte, prefix string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(prefix))
	m.Write(payload)
	return m.Sum(nil)
}

func prefixOf(kind string) string {
	if kind == kindConfirm {
		return prefixConfirm
	}
	return prefixUnsub
}

func signToken(cr *tenants.Crypto, c tokenClaims) string {
	payload, err := json.Marshal(c) // a struct of strings and integers always marshals
	if err != nil {
		panic(fmt.Sprintf("contacts: encode token: %v", err))
	}
	prefix := prefixOf(c.Kind)
	mac := tokenMAC(tokenKey(cr), prefix, payload)
	return prefix + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(mac)
}

// verifyToken checks a token's form and MAC and returns its claims and
// the tenant's crypto. Every failure is ErrInvalidToken (the reason in the
// message, never the token).
func (s *Service) verifyToken(ctx context.Context, token, kind string) (tokenClaims, *tenants.Crypto, error) {
	bad := func(why string) (tokenClaims, *tenants.Crypto, error) {
		return tokenClaims{}, nil, fmt.Errorf("contacts: %w: %s", ErrInvalidToken, why)
	}
	prefix := prefixOf(kind)
	if len(token) > maxTokenLen || !strings.HasPrefix(token, prefix) {
		return bad("not a " + kind + " link")
	}
	p64, m64, ok := strings.Cut(token[len(prefix):], ".")
	if !ok {
		return bad("malformed")
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || len(mac) != sha256.Size {
		return bad("malformed")
	}
	var c tokenClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Tenant == "" || c.Contact == "" || c.Kind != kind {
		return bad("malformed")
	}
	cr, err := s.Keyring.Crypto(ctx, c.Tenant)
	if errors.Is(err, tenants.ErrNoKey) || errors.Is(err, store.ErrNotFound) {
		return bad("unknown tenant")
	}
	if err != nil {
		return tokenClaims{}, nil, fmt.Errorf("contacts: tenant keys: %w", err)
	}
	if !hmac.Equal(mac, tokenMAC(tokenKey(cr), prefix, payload)) {
		return bad("signature does not match")
	}
	if c.Channel != ChannelEmail && c.Channel != ChannelSMS || !purposeRE.MatchString(c.Purpose) {
		return bad("malformed")
	}
	return c, cr, nil
}

// UnsubscribeToken returns the signed token of an unsubscribe link for
// one contact, channel and purpose (DefaultPurpose when empty), to put in
// each message (the URL of List-Unsubscribe, whose one-click POST calls
// Unsubscribe). It reads nothing from the store. Unsubscribe tokens do not
// expire: a link in an old message must keep working, and the worst use of a
// leaked one is to unsubscribe its owner.
func (s *Service) UnsubscribeToken(ctx context.Context, tenantID, contactID string, channel Channel, purpose string) (string, error) {
	if purpose == "" {
		purpose = DefaultPurpose
	}
	if channel != ChannelEmail && channel != ChannelSMS {
		return "", invalid("channel", "must be email or sms")
	}
	if !purposeRE.MatchString(purpose) {
		return "", invalid("purpose", "must be 1 to 64 lower-case letters, digits or _, starting with a letter")
	}
	if contactID == "" {
		return "", invalid("contact_id", "is required")
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return "", err
	}
	return signToken(cr, tokenClaims{Kind: kindUnsub, Tenant: tenantID, Contact: contactID, Channel: channel, Purpose: purpose, Iat: s.now().Unix()}), nil
}

// Unsubscribe is the RFC 8058 one-click handler: it withdraws the consent
// named by an unsubscribe token, at once (the next CanSend is false), with
// the proof (source link, the request's IP from the context). It is
// idempotent: a second call, or a call for a contact since deleted, succeeds
// and changes nothing. Only a forged or malformed token fails
// (ErrInvalidToken). It needs no session or cookie: the token is the
// authority.
func (s *Service) Unsubscribe(ctx context.Context, token string) error {
	c, cr, err := s.verifyToken(ctx, token, kindUnsub)
	if err != nil {
		return err
	}
	now := s.now()
	return s.tx(ctx, c.Tenant, func(tx *store.Tx) error {
		t, err := target(ctx, tx, c.Contact)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM consents WHERE tenant_id = $1 AND contact_id = $2 AND channel = $3 AND purpose = $4`,
			c.Contact, string(c.Channel), c.Purpose).Scan(&status)
		if err == nil && status == string(ConsentWithdrawn) {
			return nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("contacts: read consent: %w", err)
		}
		_, err = s.recordConsent(ctx, tx, cr, t, ConsentInput{Channel: c.Channel, Purpose: c.Purpose, Status: ConsentWithdrawn, Source: SourceLink}, "", nil, now)
		return err
	})
}
