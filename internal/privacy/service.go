package privacy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ContactShredder destroys what makes one contact's past ciphertexts
// readable (a per-contact data key), so that a backup taken before an
// erasure cannot bring the person back. It runs inside the erasure's
// transaction. contacts.KeyShredder is the real one (app.Open sets it);
// without one, erasure only overwrites the person's ciphertexts in the
// store, which does not reach backups.
type ContactShredder interface {
	ShredContact(ctx context.Context, tx *store.Tx, contactID string) (keyID string, err error)
}

// TenantKeyShredder destroys a tenant's data keys (crypto-shredding: every
// ciphertext of the tenant, backups included, becomes unreadable). It runs
// inside the destruction's platform transaction, before the rows go, and
// returns the ids of the keys it destroyed. StoreKeyShredder is the
// default over the tenant_keys table; app.Open sets tenants.Service
// (ShredTenantKeys: also the provider's per-tenant key, and a shredding
// record that the destruction keeps).
type TenantKeyShredder interface {
	ShredTenantKeys(ctx context.Context, ptx *store.PlatformTx, tenantID string) ([]string, error)
}

// BackupSet is one backup set holding a tenant's data.
type BackupSet struct {
	ID        string    `json:"id"`
	Target    string    `json:"target"`
	TakenAt   time.Time `json:"taken_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Action is what destruction did with it: "deleted", or "expires"
	// (kept until ExpiresAt, unreadable once the keys are shredded).
	Action string `json:"action"`
}

// BackupSets lists and deletes (or expires) a tenant's backup sets. Issue 8
// (internal/backup) provides it; while nil, destruction certifies that no
// backup service is configured.
type BackupSets interface {
	DestroyTenantBackups(ctx context.Context, tenantID string) ([]BackupSet, error)
}

// Service runs the privacy operations of a tenant: subject requests,
// retention, anonymised copies, export and import, purge and destruction.
type Service struct {
	DB       *store.DB
	Master   keys.MasterKey
	Keyring  *tenants.Keyring
	Tenants  *tenants.Service
	Contacts *contacts.Service
	Audit    *audit.Service
	// Optional hooks (see their types).
	ContactShredder ContactShredder
	KeyShredder     TenantKeyShredder
	Backups         BackupSets
	// CopyProgress, when set, is called after each transaction of an
	// anonymised copy commits, with the copy, the table written and how
	// many of its rows are copied so far (progress reporting). The copy's
	// tenant is consistent at each of these points for its backups: a
	// point taken there restores.
	CopyProgress func(ctx context.Context, copy tenants.Tenant, table string, rows int64)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// RequestDeadline is how long a subject request may stay open (one
	// month when 0, as GDPR art. 12(3)).
	RequestDeadline time.Duration
	// DestroyDelay is the default delay between a confirmed destruction
	// request and the destruction (30 days when 0).
	DestroyDelay time.Duration
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

func (s *Service) dueFrom(t time.Time) time.Time {
	if s.RequestDeadline > 0 {
		return t.Add(s.RequestDeadline)
	}
	return t.AddDate(0, 1, 0)
}

func (s *Service) destroyDelay() time.Duration {
	if s.DestroyDelay > 0 {
		return s.DestroyDelay
	}
	return 30 * 24 * time.Hour
}

// Errors; the API and CLI map them to problems and messages.
var (
	ErrNotFound       = errors.New("not found")
	ErrInvalid        = errors.New("invalid request")
	ErrNotEmpty       = errors.New("the target tenant is not empty")
	ErrBusy           = errors.New("the tenant has running jobs")
	ErrBadCode        = errors.New("wrong or expired confirmation code")
	ErrBadCertificate = errors.New("the certificate does not verify")
)

func (s *Service) crypto(ctx context.Context, tenantID string) (*tenants.Crypto, error) {
	cr, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("privacy: tenant keys: %w", err)
	}
	return cr, nil
}
