package contacts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Status is a contact's deliverability status.
type Status string

// Contact statuses.
const (
	StatusActive       Status = "active"
	StatusUnsubscribed Status = "unsubscribed" // from everything, by the person
	StatusBounced      Status = "bounced"      // the address does not work
	StatusBlocklisted  Status = "blocklisted"  // an address of the contact is on the blocklist
)

// Channel is a way of reaching a contact.
type Channel string

// Channels.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
)

// ConsentStatus is the state of a consent.
type ConsentStatus string

// Consent statuses.
const (
	ConsentGranted   ConsentStatus = "granted"
	ConsentWithdrawn ConsentStatus = "withdrawn"
	ConsentPending   ConsentStatus = "pending" // double opt-in link sent, not yet confirmed
)

// Source says how a consent (or a contact) came in.
type Source string

// Sources of consent. SourceLink is a confirmation or unsubscribe link
// followed by the person.
const (
	SourceForm   Source = "form"
	SourceImport Source = "import"
	SourceAPI    Source = "api"
	SourceAdmin  Source = "admin"
	SourceLink   Source = "link"
)

// DefaultPurpose is the consent purpose used when none is given.
const DefaultPurpose = "marketing"

// Contact is one person known to a tenant, decrypted.
type Contact struct {
	ID         string         `json:"id"`
	Email      string         `json:"email,omitempty"`
	Phone      string         `json:"phone,omitempty"`
	FirstName  string         `json:"first_name,omitempty"`
	LastName   string         `json:"last_name,omitempty"`
	Locale     string         `json:"locale,omitempty"`
	TimeZone   string         `json:"timezone,omitempty"`
	Attributes map[string]any `json:"attributes"`
	Status     Status         `json:"status"`
	// Source is how the contact was created: api, admin, form, import, seed.
	Source    string    `json:"source"`
	Consents  []Consent `json:"consents,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NewContact is the input of [Service.Create]. At least one of Email and
// Phone is required.
type NewContact struct {
	Email      string         `json:"email"`
	Phone      string         `json:"phone"`
	FirstName  string         `json:"first_name"`
	LastName   string         `json:"last_name"`
	Locale     string         `json:"locale"`
	TimeZone   string         `json:"timezone"`
	Attributes map[string]any `json:"attributes"`
	// Consents are recorded with the contact, in the same transaction.
	Consents []ConsentInput `json:"consents"`
	// Source: api (default), admin or form.
	Source string `json:"-"`
}

// Patch is the input of [Service.Update]: nil fields are left unchanged;
// a pointer to "" clears the field (email and phone cannot both be
// cleared). Attributes are merged key by key; a key set to nil is removed.
type Patch struct {
	Email      *string        `json:"email"`
	Phone      *string        `json:"phone"`
	FirstName  *string        `json:"first_name"`
	LastName   *string        `json:"last_name"`
	Locale     *string        `json:"locale"`
	TimeZone   *string        `json:"timezone"`
	Attributes map[string]any `json:"attributes"`
	// Status may be set to active, unsubscribed or bounced; blocklisted is
	// set only through the blocklist, and a blocklisted contact's status
	// cannot be changed while its address is on it.
	Status *Status `json:"status"`
}

// Consent is the current consent of a contact for a channel and purpose,
// with its latest proof.
type Consent struct {
	Channel        Channel       `json:"channel"`
	Purpose        string        `json:"purpose"`
	Status         ConsentStatus `json:"status"`
	Source         Source        `json:"source"`
	SourceIP       string        `json:"source_ip,omitempty"`
	WordingHash    string        `json:"wording_hash,omitempty"`
	WordingVersion string        `json:"wording_version,omitempty"`
	JobID          string        `json:"job_id,omitempty"`
	ConfirmedAt    *time.Time    `json:"confirmed_at,omitempty"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// ConsentInput records a consent decision and its proof (PRIV-5).
type ConsentInput struct {
	Channel Channel       `json:"channel"`
	Purpose string        `json:"purpose"` // DefaultPurpose when empty
	Status  ConsentStatus `json:"status"`
	// Source: form, api (default), admin; import is set by the importer.
	Source Source `json:"source"`
	// SourceIP is the address the decision came from; when empty, the IP of
	// the request in the context (audit.Meta) is used. Stored encrypted.
	SourceIP string `json:"source_ip"`
	// Wording is the text shown to the person. It is stored once per tenant
	// and referred to by its SHA-256 (WordingHash, computed when empty).
	Wording        string `json:"wording"`
	WordingHash    string `json:"wording_hash"`
	WordingVersion string `json:"wording_version"`
}

// ConsentEvent is one stored proof of a consent change (append-only).
type ConsentEvent struct {
	ID             string        `json:"id"`
	ContactID      string        `json:"contact_id"`
	Channel        Channel       `json:"channel"`
	Purpose        string        `json:"purpose"`
	Status         ConsentStatus `json:"status"`
	Source         Source        `json:"source"`
	SourceIP       string        `json:"source_ip,omitempty"`
	WordingHash    string        `json:"wording_hash,omitempty"`
	WordingVersion string        `json:"wording_version,omitempty"`
	JobID          string        `json:"job_id,omitempty"`
	ConfirmedAt    *time.Time    `json:"confirmed_at,omitempty"`
	At             time.Time     `json:"at"`
}

// Errors. The HTTP layer maps them to problem documents.
var (
	// ErrNotFound: no such contact, list, segment or job in this tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the email (or list or segment name) is already used in
	// this tenant.
	ErrConflict = errors.New("already exists")
	// ErrBlocklisted: the change would override the blocklist.
	ErrBlocklisted = errors.New("address is on the blocklist")
	// ErrInvalidToken: a confirmation or unsubscribe token that is
	// malformed, forged, of another kind, or no longer applicable.
	ErrInvalidToken = errors.New("invalid token")
	// ErrTokenExpired: a well-signed confirmation token past its expiry.
	ErrTokenExpired = errors.New("token expired")
	// ErrEmptyFile: an import file of 0 bytes (or only blank lines).
	ErrEmptyFile = errors.New("the file is empty")
	// ErrFileChanged: a job is resumed with a file whose SHA-256 differs
	// from the one it started with.
	ErrFileChanged = errors.New("the file differs from the one this import job started with")
	// ErrBadFile: the file as a whole cannot be imported (encoding, header,
	// mapping); the error says why.
	ErrBadFile = errors.New("the file cannot be imported")
)

// ValidationError names a bad input field and says what is expected. It
// never repeats the value.
type ValidationError struct{ Field, Message string }

// Error says which field is wrong and what is expected.
func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Service is the contacts domain service. DB and Keyring are required; the
// zero value of every other field is a sensible default. It is safe for
// concurrent use.
type Service struct {
	DB      *store.DB
	Keyring *tenants.Keyring
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// ConfirmTTL is the validity of double opt-in tokens (7 days when 0).
	ConfirmTTL time.Duration
	// ImportLease is how long a running import job may go without
	// committing a batch before another run may take it over (resume it):
	// the time after which its process is presumed dead (1 minute when 0).
	ImportLease time.Duration
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

func (s *Service) confirmTTL() time.Duration {
	if s.ConfirmTTL > 0 {
		return s.ConfirmTTL
	}
	return 7 * 24 * time.Hour
}

func (s *Service) importLease() time.Duration {
	if s.ImportLease > 0 {
		return s.ImportLease
	}
	return time.Minute
}

func (s *Service) crypto(ctx context.Context, tenantID string) (*tenants.Crypto, error) {
	if tenantID == "" {
		return nil, store.ErrNoTenant
	}
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("contacts: tenant keys: %w", err)
	}
	return c, nil
}

func (s *Service) tx(ctx context.Context, tenantID string, fn func(*store.Tx) error) error {
	return s.DB.Tenant(tenantID).Tx(ctx, fn)
}

func newID() string {
	// uuid.NewV7 fails only if the system's random source does.
	id, err := uuid.NewV7()
	if err != nil {
		panic(fmt.Sprintf("contacts: new id: %v", err))
	}
	return id.String()
}

// Field names bound into the ciphertexts and blind indexes (the associated
// data of the field cipher): a value sealed for one field does not open as
// another.
const (
	fEmail      = "contact.email"
	fPhone      = "contact.phone"
	fFirstName  = "contact.first_name"
	fLastName   = "contact.last_name"
	fAttributes = "contact.attributes"
	fSourceIP   = "consent.source_ip"
)

func micros(t time.Time) int64 { return store.Micros(t) }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return store.Micros(*t)
}

func fromNullMicros(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := store.FromMicros(*v)
	return &t
}
