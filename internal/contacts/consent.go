package contacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

var purposeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidPurpose reports whether p is a well-formed consent purpose.
func ValidPurpose(p string) bool { return purposeRE.MatchString(p) }

// Limits of a consent's proof.
const (
	maxWordingBytes = 16 << 10
	maxVersionBytes = 64
)

// WordingHash is the SHA-256, in hex, of a consent wording: what is stored
// with each consent and event, the text itself being kept once per tenant.
func WordingHash(wording string) string {
	h := sha256.Sum256([]byte(wording))
	return hex.EncodeToString(h[:])
}

// checkConsentInput validates and normalises a consent input. field prefixes
// the names in errors ("consents[0]"). Sources import and link are set by the
// service itself and refused here.
func checkConsentInput(ci ConsentInput, field string) (ConsentInput, error) {
	if field != "" {
		field += "."
	}
	switch ci.Channel {
	case ChannelEmail, ChannelSMS:
	default:
		return ci, invalid(field+"channel", "must be email or sms")
	}
	if ci.Purpose == "" {
		ci.Purpose = DefaultPurpose
	}
	if !purposeRE.MatchString(ci.Purpose) {
		return ci, invalid(field+"purpose", "must be 1 to 64 lower-case letters, digits or _, starting with a letter")
	}
	switch ci.Status {
	case ConsentGranted, ConsentWithdrawn, ConsentPending:
	default:
		return ci, invalid(field+"status", "must be granted, withdrawn or pending")
	}
	switch ci.Source {
	case "":
		ci.Source = SourceAPI
	case SourceForm, SourceAPI, SourceAdmin:
	default:
		return ci, invalid(field+"source", "must be form, api or admin")
	}
	if ci.SourceIP != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(ci.SourceIP))
		if err != nil {
			return ci, invalid(field+"source_ip", "must be an IPv4 or IPv6 address")
		}
		ci.SourceIP = a.Unmap().String()
	}
	if len(ci.Wording) > maxWordingBytes || !utf8.ValidString(ci.Wording) {
		return ci, invalid(field+"wording", "must be valid UTF-8 of at most %d bytes", maxWordingBytes)
	}
	if ci.Wording != "" {
		h := WordingHash(ci.Wording)
		if ci.WordingHash != "" && !strings.EqualFold(ci.WordingHash, h) {
			return ci, invalid(field+"wording_hash", "does not match the SHA-256 of the wording")
		}
		ci.WordingHash = h
	} else if ci.WordingHash != "" {
		b, err := hex.DecodeString(ci.WordingHash)
		if err != nil || len(b) != sha256.Size {
			return ci, invalid(field+"wording_hash", "must be a SHA-256 in hex (64 characters)")
		}
		ci.WordingHash = strings.ToLower(ci.WordingHash)
	}
	if len(ci.WordingVersion) > maxVersionBytes || !printable(ci.WordingVersion) {
		return ci, invalid(field+"wording_version", "must be at most %d printable characters", maxVersionBytes)
	}
	return ci, nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// hasAddress refuses to grant (or ask) consent on a channel the contact has
// no address for. Withdrawal is always recorded.
func hasAddress(email, phone string, ci ConsentInput, field string) error {
	if ci.Status == ConsentWithdrawn {
		return nil
	}
	if field != "" {
		field += "."
	}
	if ci.Channel == ChannelEmail && email == "" {
		return invalid(field+"channel", "the contact has no email address")
	}
	if ci.Channel == ChannelSMS && phone == "" {
		return invalid(field+"channel", "the contact has no phone number")
	}
	return nil
}

// consentTarget is the contact a consent is about, with the blind indexes
// of its addresses (the subject of the proof).
type consentTarget struct {
	contactID            string
	emailBidx, phoneBidx []byte
}

func (t consentTarget) subject(ch Channel) []byte {
	if ch == ChannelSMS {
		return t.phoneBidx
	}
	return t.emailBidx
}

// requestIP is the source IP of a consent: given, or the request's.
func requestIP(ctx context.Context, given string) string {
	if given != "" {
		return given
	}
	ip := audit.MetaFrom(ctx).IP
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.Unmap().String()
	}
	return ""
}

// recordConsent upserts the current consent and appends its proof, with an
// audit event, in tx. ci must have been checked.
func (s *Service) recordConsent(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, t consentTarget, ci ConsentInput,
	jobID string, confirmedAt *time.Time, now time.Time) (Consent, error) {
	ip := requestIP(ctx, ci.SourceIP)
	ipEnc, err := sealOpt(cr, fSourceIP, ip)
	if err != nil {
		return Consent{}, err
	}
	if ci.Wording != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO consent_wordings (tenant_id, hash, version, text, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, hash) DO NOTHING`, ci.WordingHash, ci.WordingVersion, ci.Wording, micros(now)); err != nil {
			return Consent{}, fmt.Errorf("contacts: save consent wording: %w", err)
		}
	}
	evID := newID()
	_, err = tx.Exec(ctx, `INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, source_ip_enc, wording_hash,
		wording_version, job_id, confirmed_at, last_event_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
		ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, source = excluded.source,
			source_ip_enc = excluded.source_ip_enc, wording_hash = excluded.wording_hash, wording_version = excluded.wording_version,
			job_id = excluded.job_id, confirmed_at = excluded.confirmed_at, last_event_id = excluded.last_event_id,
			updated_at = excluded.updated_at`,
		t.contactID, string(ci.Channel), ci.Purpose, string(ci.Status), string(ci.Source), blob(ipEnc), ci.WordingHash,
		ci.WordingVersion, jobID, nullMicros(confirmedAt), evID, micros(now))
	if err != nil {
		return Consent{}, fmt.Errorf("contacts: save consent: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO consent_events (tenant_id, id, contact_id, subject_bidx, channel, purpose, status, source,
		source_ip_enc, wording_hash, wording_version, job_id, confirmed_at, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		evID, t.contactID, blob(t.subject(ci.Channel)), string(ci.Channel), ci.Purpose, string(ci.Status), string(ci.Source),
		blob(ipEnc), ci.WordingHash, ci.WordingVersion, jobID, nullMicros(confirmedAt), micros(now))
	if err != nil {
		return Consent{}, fmt.Errorf("contacts: record consent proof: %w", err)
	}
	changes := []audit.Change{{Field: "consent.channel", After: string(ci.Channel)}, {Field: "consent.purpose", After: ci.Purpose},
		{Field: "consent.status", After: string(ci.Status)}, {Field: "consent.source", After: string(ci.Source)}}
	if ci.WordingHash != "" {
		changes = append(changes, audit.Change{Field: "consent.wording_hash", After: ci.WordingHash}, audit.Change{Field: "consent.wording_version", After: ci.WordingVersion})
	}
	if ip != "" {
		changes = append(changes, audit.Change{Field: "consent.source_ip", Personal: true})
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "consent." + string(ci.Status), ObjectType: "contact",
		ObjectID: t.contactID, Changes: changes, Details: map[string]any{"consent_event_id": evID}}); err != nil {
		return Consent{}, err
	}
	return Consent{Channel: ci.Channel, Purpose: ci.Purpose, Status: ci.Status, Source: ci.Source, SourceIP: ip, WordingHash: ci.WordingHash,
		WordingVersion: ci.WordingVersion, JobID: jobID, ConfirmedAt: confirmedAt, CreatedAt: now, UpdatedAt: now}, nil
}

// consentsOf returns a contact's current consents, source IPs decrypted.
func (s *Service) consentsOf(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, contactID string) ([]Consent, error) {
	rows, err := tx.Query(ctx, `SELECT channel, purpose, status, source, source_ip_enc, wording_hash, wording_version, job_id,
		confirmed_at, created_at, updated_at FROM consents WHERE tenant_id = $1 AND contact_id = $2 ORDER BY channel, purpose`, contactID)
	if err != nil {
		return nil, fmt.Errorf("contacts: read consents: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Consent
	for rows.Next() {
		var c Consent
		var ch, st, src string
		var ipEnc []byte
		var confirmed *int64
		var created, updated int64
		if err := rows.Scan(&ch, &c.Purpose, &st, &src, &ipEnc, &c.WordingHash, &c.WordingVersion, &c.JobID, &confirmed, &created, &updated); err != nil {
			return nil, fmt.Errorf("contacts: read consents: %w", err)
		}
		c.Channel, c.Status, c.Source = Channel(ch), ConsentStatus(st), Source(src)
		c.ConfirmedAt, c.CreatedAt, c.UpdatedAt = fromNullMicros(confirmed), store.FromMicros(created), store.FromMicros(updated)
		if c.SourceIP, err = openOpt(cr, fSourceIP, ipEnc); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("contacts: read consents: %w", err)
	}
	return out, nil
}

// target reads the contact a consent is about, locking it on PostgreSQL.
func target(ctx context.Context, tx *store.Tx, contactID string) (consentTarget, error) {
	q := `SELECT email_bidx, phone_bidx FROM contacts WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL`
	if tx.Dialect() == store.Postgres {
		q += ` FOR UPDATE`
	}
	t := consentTarget{contactID: contactID}
	err := tx.QueryRow(ctx, q, contactID).Scan(&t.emailBidx, &t.phoneBidx)
	if errors.Is(err, store.ErrNotFound) {
		return t, fmt.Errorf("contact %w", ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("contacts: read contact: %w", err)
	}
	return t, nil
}

func (s *Service) setConsent(ctx context.Context, tenantID, contactID string, in ConsentInput, status ConsentStatus) (Consent, error) {
	in.Status = status
	ci, err := checkConsentInput(in, "")
	if err != nil {
		return Consent{}, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Consent{}, err
	}
	now := s.now()
	var out Consent
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		t, err := target(ctx, tx, contactID)
		if err != nil {
			return err
		}
		if err := hasAddress(addrMark(t.emailBidx), addrMark(t.phoneBidx), ci, ""); err != nil {
			return err
		}
		out, err = s.recordConsent(ctx, tx, cr, t, ci, "", nil, now)
		return err
	})
	return out, err
}

func addrMark(bidx []byte) string {
	if bidx == nil {
		return ""
	}
	return "set"
}

// Grant records that the contact consents to messages on in.Channel for
// in.Purpose (single opt-in), with its proof: in.Source, in.SourceIP (or the
// request's IP from the context), the wording and its version. It takes
// effect for the next send.
func (s *Service) Grant(ctx context.Context, tenantID, contactID string, in ConsentInput) (Consent, error) {
	return s.setConsent(ctx, tenantID, contactID, in, ConsentGranted)
}

// Withdraw records that the contact withdraws consent for in.Channel and
// in.Purpose. It takes effect for the next send. Withdrawal is recorded even
// when no consent was held (an objection), and no import can turn it back to
// granted.
func (s *Service) Withdraw(ctx context.Context, tenantID, contactID string, in ConsentInput) (Consent, error) {
	return s.setConsent(ctx, tenantID, contactID, in, ConsentWithdrawn)
}

// SetPending records a consent request awaiting double opt-in, with its
// proof, and returns a signed confirmation token valid for ConfirmTTL (7
// days by default), to put in the confirmation link sent to the person.
// Only the latest request's token confirms: asking again supersedes earlier
// links.
func (s *Service) SetPending(ctx context.Context, tenantID, contactID string, in ConsentInput) (Consent, string, error) {
	in.Status = ConsentPending
	ci, err := checkConsentInput(in, "")
	if err != nil {
		return Consent{}, "", err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Consent{}, "", err
	}
	now := s.now()
	var out Consent
	var evID string
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		t, err := target(ctx, tx, contactID)
		if err != nil {
			return err
		}
		if err := hasAddress(addrMark(t.emailBidx), addrMark(t.phoneBidx), ci, ""); err != nil {
			return err
		}
		if out, err = s.recordConsent(ctx, tx, cr, t, ci, "", nil, now); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT last_event_id FROM consents WHERE tenant_id = $1 AND contact_id = $2 AND channel = $3 AND purpose = $4`,
			contactID, string(ci.Channel), ci.Purpose).Scan(&evID)
	})
	if err != nil {
		return Consent{}, "", err
	}
	tok := signToken(cr, tokenClaims{Kind: kindConfirm, Tenant: tenantID, Contact: contactID, Channel: ci.Channel, Purpose: ci.Purpose,
		Event: evID, Iat: now.Unix(), Exp: now.Add(s.confirmTTL()).Unix()})
	return out, tok, nil
}

// Confirm accepts a double opt-in token from SetPending: the consent
// becomes granted with its confirmation time, the proof records the click
// (source link, the request's IP) and keeps the wording of the request. An
// expired token gives ErrTokenExpired; a forged, altered or superseded one,
// or one already used, ErrInvalidToken.
func (s *Service) Confirm(ctx context.Context, token string) (Consent, error) {
	claims, cr, err := s.verifyToken(ctx, token, kindConfirm)
	if err != nil {
		return Consent{}, err
	}
	now := s.now()
	if now.Unix() > claims.Exp {
		return Consent{}, fmt.Errorf("contacts: confirmation link: %w", ErrTokenExpired)
	}
	var out Consent
	err = s.tx(ctx, claims.Tenant, func(tx *store.Tx) error {
		t, err := target(ctx, tx, claims.Contact)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("contacts: %w: the contact no longer exists", ErrInvalidToken)
		}
		if err != nil {
			return err
		}
		var status, lastEvent, wHash, wVersion string
		err = tx.QueryRow(ctx, `SELECT status, last_event_id, wording_hash, wording_version FROM consents
			WHERE tenant_id = $1 AND contact_id = $2 AND channel = $3 AND purpose = $4`,
			claims.Contact, string(claims.Channel), claims.Purpose).Scan(&status, &lastEvent, &wHash, &wVersion)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (status != string(ConsentPending) || lastEvent != claims.Event)) {
			return fmt.Errorf("contacts: %w: this confirmation is no longer pending (already used, superseded or withdrawn)", ErrInvalidToken)
		}
		if err != nil {
			return fmt.Errorf("contacts: read consent: %w", err)
		}
		ci := ConsentInput{Channel: claims.Channel, Purpose: claims.Purpose, Status: ConsentGranted, Source: SourceLink,
			WordingHash: wHash, WordingVersion: wVersion}
		out, err = s.recordConsent(ctx, tx, cr, t, ci, "", &now, now)
		return err
	})
	if err != nil {
		return Consent{}, err
	}
	return out, nil
}

// ConsentHistory returns the stored proofs of a contact's consents, oldest
// first, source IPs decrypted, and records the access. The history outlives
// the contact: it can be read after Delete.
func (s *Service) ConsentHistory(ctx context.Context, tenantID, contactID string) ([]ConsentEvent, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []ConsentEvent
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, contact_id, channel, purpose, status, source, source_ip_enc, wording_hash, wording_version,
			job_id, confirmed_at, at FROM consent_events WHERE tenant_id = $1 AND contact_id = $2 ORDER BY at, id LIMIT 10000`, contactID)
		if err != nil {
			return fmt.Errorf("contacts: read consent history: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var e ConsentEvent
			var ch, st, src string
			var ipEnc []byte
			var confirmed *int64
			var at int64
			if err := rows.Scan(&e.ID, &e.ContactID, &ch, &e.Purpose, &st, &src, &ipEnc, &e.WordingHash, &e.WordingVersion, &e.JobID, &confirmed, &at); err != nil {
				return fmt.Errorf("contacts: read consent history: %w", err)
			}
			e.Channel, e.Status, e.Source, e.ConfirmedAt, e.At = Channel(ch), ConsentStatus(st), Source(src), fromNullMicros(confirmed), store.FromMicros(at)
			if e.SourceIP, err = openOpt(cr, fSourceIP, ipEnc); err != nil {
				return err
			}
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("contacts: read consent history: %w", err)
		}
		return accessEvent(ctx, tx, "consent.history.read", []string{contactID}, nil)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ConsentWording returns the text of a consent wording by its hash.
func (s *Service) ConsentWording(ctx context.Context, tenantID, hash string) (text, version string, err error) {
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT text, version FROM consent_wordings WHERE tenant_id = $1 AND hash = $2`, strings.ToLower(hash)).Scan(&text, &version)
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", "", fmt.Errorf("consent wording %w", ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("contacts: read consent wording: %w", err)
	}
	return text, version, nil
}
