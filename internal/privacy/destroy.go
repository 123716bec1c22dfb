package privacy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Destruction states.
const (
	DestroyPending   = "pending"
	DestroyCancelled = "cancelled"
	DestroyDone      = "done"
)

// Destruction is a tenant's destruction request (REV-3).
type Destruction struct {
	TenantID    string     `json:"tenant_id"`
	Slug        string     `json:"slug"`
	State       string     `json:"state"`
	RequestedAt time.Time  `json:"requested_at"`
	DueAt       time.Time  `json:"due_at"`
	RequestedBy string     `json:"requested_by,omitempty"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
	DoneAt      *time.Time `json:"done_at,omitempty"`
}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte("relais/destroy-code/v1|" + strings.ToUpper(strings.TrimSpace(code))))
	return h[:]
}

// RequestDestruction is step one: it records a destruction request for the
// tenant, due after delay (DestroyDelay when 0), and returns the
// confirmation code, shown once. A new request replaces a pending one (and
// its code). Nothing is destroyed until ConfirmDestruction.
func (s *Service) RequestDestruction(ctx context.Context, t tenants.Tenant, delay time.Duration, by string) (Destruction, string, error) {
	if delay <= 0 {
		delay = s.destroyDelay()
	}
	raw := make([]byte, 10)
	_, _ = rand.Read(raw)
	code := base32.StdEncoding.EncodeToString(raw) // 16 characters, 80 bits
	now := s.now()
	d := Destruction{TenantID: t.ID, Slug: t.Slug, State: DestroyPending, RequestedAt: now, DueAt: now.Add(delay), RequestedBy: by}
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var state string
		err := p.QueryRow(ctx, `SELECT state FROM tenant_destructions WHERE tenant_id = $1`, t.ID).Scan(&state)
		switch {
		case errors.Is(err, store.ErrNotFound):
			_, err = p.Exec(ctx, `INSERT INTO tenant_destructions (tenant_id, slug, state, code_hash, requested_at, due_at, requested_by)
				VALUES ($1, $2, 'pending', $3, $4, $5, $6)`, t.ID, t.Slug, codeHash(code), store.Micros(now), store.Micros(d.DueAt), by)
		case err != nil:
		case state == DestroyDone:
			return fmt.Errorf("%w: the tenant was already destroyed", ErrInvalid)
		default:
			_, err = p.Exec(ctx, `UPDATE tenant_destructions SET state = 'pending', code_hash = $2, requested_at = $3, due_at = $4,
				requested_by = $5, confirmed_at = NULL WHERE tenant_id = $1`, t.ID, codeHash(code), store.Micros(now), store.Micros(d.DueAt), by)
		}
		if err != nil {
			return fmt.Errorf("privacy: record the destruction request: %w", err)
		}
		ev := audit.Event{Category: audit.CategoryAdmin, Action: "tenant.destroy.request", ObjectType: "tenant", ObjectID: t.ID,
			Details: map[string]any{"slug": t.Slug, "due_at": d.DueAt}}
		if _, err := audit.Append(ctx, p.Tenant(""), ev); err != nil {
			return err
		}
		_, err = audit.Append(ctx, p.Tenant(t.ID), ev)
		return err
	})
	if err != nil {
		return Destruction{}, "", err
	}
	return d, code, nil
}

// GetDestruction returns a tenant's destruction request.
func (s *Service) GetDestruction(ctx context.Context, tenantID string) (Destruction, error) {
	var d Destruction
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		d, _, err = getDestruction(ctx, p, tenantID)
		return err
	})
	return d, err
}

func getDestruction(ctx context.Context, p *store.PlatformTx, ref string) (Destruction, []byte, error) {
	var d Destruction
	var hash []byte
	var req, due int64
	var conf, done *int64
	err := p.QueryRow(ctx, `SELECT tenant_id, slug, state, code_hash, requested_at, due_at, requested_by, confirmed_at, done_at
		FROM tenant_destructions WHERE tenant_id = $1 OR slug = $1 ORDER BY requested_at DESC LIMIT 1`, ref).
		Scan(&d.TenantID, &d.Slug, &d.State, &hash, &req, &due, &d.RequestedBy, &conf, &done)
	if errors.Is(err, store.ErrNotFound) {
		return d, nil, fmt.Errorf("destruction request %w; request one first", ErrNotFound)
	}
	if err != nil {
		return d, nil, err
	}
	d.RequestedAt, d.DueAt = store.FromMicros(req), store.FromMicros(due)
	if conf != nil {
		t := store.FromMicros(*conf)
		d.ConfirmedAt = &t
	}
	if done != nil {
		t := store.FromMicros(*done)
		d.DoneAt = &t
	}
	return d, hash, nil
}

// CancelDestruction cancels a pending destruction.
func (s *Service) CancelDestruction(ctx context.Context, t tenants.Tenant) error {
	return s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		d, _, err := getDestruction(ctx, p, t.ID)
		if err != nil {
			return err
		}
		if d.State != DestroyPending {
			return fmt.Errorf("%w: the destruction is %s", ErrInvalid, d.State)
		}
		if _, err := p.Exec(ctx, `UPDATE tenant_destructions SET state = 'cancelled' WHERE tenant_id = $1`, t.ID); err != nil {
			return err
		}
		ev := audit.Event{Category: audit.CategoryAdmin, Action: "tenant.destroy.cancel", ObjectType: "tenant", ObjectID: t.ID}
		if _, err := audit.Append(ctx, p.Tenant(""), ev); err != nil {
			return err
		}
		_, err = audit.Append(ctx, p.Tenant(t.ID), ev)
		return err
	})
}

// ConfirmDestruction is step two: with the right code, it confirms the
// request. With now, or once the request is due, it destroys the tenant and
// returns the signed certificate; before that, the confirmed request waits
// for RunDueDestructions (the server's job) or a later confirmation.
func (s *Service) ConfirmDestruction(ctx context.Context, t tenants.Tenant, code string, now bool) (Destruction, *SignedCertificate, error) {
	var d Destruction
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var hash []byte
		var err error
		if d, hash, err = getDestruction(ctx, p, t.ID); err != nil {
			return err
		}
		if d.State != DestroyPending {
			return fmt.Errorf("%w: the destruction request is %s; request a new one", ErrBadCode, d.State)
		}
		if subtle.ConstantTimeCompare(hash, codeHash(code)) != 1 {
			return ErrBadCode
		}
		if d.ConfirmedAt == nil {
			at := s.now()
			d.ConfirmedAt = &at
			if _, err := p.Exec(ctx, `UPDATE tenant_destructions SET confirmed_at = $2 WHERE tenant_id = $1`, t.ID, store.Micros(at)); err != nil {
				return err
			}
			ev := audit.Event{Category: audit.CategoryAdmin, Action: "tenant.destroy.confirm", ObjectType: "tenant", ObjectID: t.ID,
				Details: map[string]any{"due_at": d.DueAt, "immediate": now}}
			if _, err := audit.Append(ctx, p.Tenant(""), ev); err != nil {
				return err
			}
			_, err = audit.Append(ctx, p.Tenant(t.ID), ev)
			return err
		}
		return nil
	})
	if err != nil {
		return d, nil, err
	}
	if !now && s.now().Before(d.DueAt) {
		return d, nil, nil
	}
	cert, err := s.destroy(ctx, t, d)
	if err != nil {
		return d, nil, err
	}
	d.State = DestroyDone
	return d, cert, nil
}

// RunDueDestructions destroys every tenant whose confirmed destruction is
// due (the server runs it periodically). A tenant with running jobs is
// left for the next run; the errors are returned joined.
func (s *Service) RunDueDestructions(ctx context.Context) (int, error) {
	var due []Destruction
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id FROM tenant_destructions WHERE state = 'pending' AND confirmed_at IS NOT NULL AND due_at <= $1`, store.Micros(s.now()))
		if err != nil {
			return err
		}
		var ids []string
		if err := scanAll(rows, func() []any { ids = append(ids, ""); return []any{&ids[len(ids)-1]} }); err != nil {
			return err
		}
		for _, id := range ids {
			d, _, err := getDestruction(ctx, p, id)
			if err != nil {
				return err
			}
			due = append(due, d)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, d := range due {
		t, err := s.Tenants.Get(ctx, d.TenantID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := s.destroy(ctx, t, d); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", d.Slug, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// runningJobs says what still runs in the tenant ("" when nothing).
func runningJobs(ctx context.Context, tx *store.Tx) (string, error) {
	var campaigns, imports, messages int64
	err := tx.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM campaigns WHERE tenant_id = $1 AND state IN ('scheduled', 'running')),
		(SELECT count(*) FROM import_jobs WHERE tenant_id = $1 AND status = 'running'),
		(SELECT count(*) FROM messages WHERE tenant_id = $1 AND state IN ('queued', 'sending', 'held'))`).Scan(&campaigns, &imports, &messages)
	if err != nil {
		return "", fmt.Errorf("privacy: look for running jobs: %w", err)
	}
	var parts []string
	if campaigns > 0 {
		parts = append(parts, fmt.Sprintf("%d campaign(s) scheduled or running (cancel them)", campaigns))
	}
	if imports > 0 {
		parts = append(parts, fmt.Sprintf("%d import(s) running (let them finish)", imports))
	}
	if messages > 0 {
		parts = append(parts, fmt.Sprintf("%d message(s) queued or being sent (cancel their campaigns or wait)", messages))
	}
	return strings.Join(parts, ", "), nil
}

// StoreKeyShredder shreds a tenant's data keys in the store: every wrapped
// key is overwritten and marked destroyed (the rows are deleted with the
// tenant's other rows). Without the wrapped key, nothing sealed under it, in
// the store or in any backup, can be decrypted.
type StoreKeyShredder struct{}

// ShredTenantKeys implements TenantKeyShredder.
func (StoreKeyShredder) ShredTenantKeys(ctx context.Context, ptx *store.PlatformTx, tenantID string) ([]string, error) {
	tx := ptx.Tenant(tenantID)
	rows, err := tx.Query(ctx, `SELECT version, master_key_id FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`)
	if err != nil {
		return nil, err
	}
	var ids []string
	var v int
	var mk string
	err = scanAll(rows, func() []any {
		if mk != "" {
			ids = append(ids, fmt.Sprintf("tenant-data-key %s v%d (wrapped by master key %s)", tenantID, v, mk))
		}
		return []any{&v, &mk}
	})
	if mk != "" {
		ids = append(ids, fmt.Sprintf("tenant-data-key %s v%d (wrapped by master key %s)", tenantID, v, mk))
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE tenant_keys SET wrapped = $2, state = 'destroyed' WHERE tenant_id = $1`, make([]byte, 64)); err != nil {
		return nil, fmt.Errorf("privacy: overwrite the tenant's keys: %w", err)
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_signing_keys WHERE tenant_id = $1`).Scan(&n); err == nil && n > 0 {
		ids = append(ids, fmt.Sprintf("audit-signing-key relais-audit/%s (Ed25519, wrapped by the master key)", tenantID))
	}
	return ids, nil
}

// outlivesTenant are the tables whose rows of a tenant survive its
// destruction: the shredding records (no foreign key to the tenant), which a
// restore of an older backup re-applies (tenants.Service.ReapplyShredding),
// so that the restore does not bring the destroyed tenant's keys back.
var outlivesTenant = map[string]bool{"shredding_records": true}

// destroy deletes every row of the tenant (but its shredding records), shreds its keys, deletes or
// expires its backup sets, and issues the signed certificate.
func (s *Service) destroy(ctx context.Context, t tenants.Tenant, d Destruction) (*SignedCertificate, error) {
	var busy string
	if err := s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		busy, err = runningJobs(ctx, tx)
		return err
	}); err != nil {
		return nil, err
	}
	if busy != "" {
		return nil, fmt.Errorf("%w: %s", ErrBusy, busy)
	}
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return nil, err
	}
	cert := Certificate{Format: CertificateFormat, TenantID: t.ID, TenantSlug: t.Slug, TenantName: t.Name,
		RequestedAt: d.RequestedAt, RequestedBy: d.RequestedBy, Rows: map[string]int64{}}
	if d.ConfirmedAt != nil {
		cert.ConfirmedAt = *d.ConfirmedAt
	}
	shredder := s.KeyShredder
	if shredder == nil {
		shredder = StoreKeyShredder{}
	}
	cert.DestroyedAt = s.now()
	err = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if s.DB.Dialect() == store.SQLite {
			if _, err := p.Exec(ctx, `PRAGMA secure_delete = ON`); err != nil {
				return err
			}
		}
		tx := p.Tenant(t.ID)
		if busy, err := runningJobs(ctx, tx); err != nil || busy != "" {
			if err == nil {
				err = fmt.Errorf("%w: %s", ErrBusy, busy)
			}
			return err
		}
		if cert.KeysShredded, err = shredder.ShredTenantKeys(ctx, p, t.ID); err != nil {
			return fmt.Errorf("privacy: shred the tenant's keys: %w", err)
		}
		for i := len(tabs) - 1; i >= 0; i-- {
			if outlivesTenant[tabs[i].Name] {
				continue
			}
			r, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(tabs[i].Name)+` WHERE tenant_id = $1`)
			if err != nil {
				return fmt.Errorf("privacy: delete %s: %w", tabs[i].Name, err)
			}
			if n, _ := r.RowsAffected(); n > 0 {
				cert.Rows[tabs[i].Name] = n
				cert.TotalRows += n
			}
		}
		// The backups' change log is fed by triggers on the other tables:
		// the deletions above logged themselves there. Empty it last.
		for _, tb := range tabs {
			if tb.Name == "backup_changes" {
				r, err := tx.Exec(ctx, `DELETE FROM backup_changes WHERE tenant_id = $1`)
				if err != nil {
					return fmt.Errorf("privacy: delete backup_changes: %w", err)
				}
				if n, _ := r.RowsAffected(); n > 0 {
					cert.Rows[tb.Name] += n
					cert.TotalRows += n
				}
			}
		}
		for _, tb := range tabs {
			if outlivesTenant[tb.Name] {
				continue
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+quoteIdent(tb.Name)+` WHERE tenant_id = $1`).Scan(&n); err != nil {
				return err
			}
			cert.RemainingRows += n
		}
		if cert.RemainingRows != 0 {
			return fmt.Errorf("privacy: %d rows of the tenant remain after deletion", cert.RemainingRows)
		}
		if _, err := p.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, t.ID); err != nil {
			return fmt.Errorf("privacy: delete the tenant: %w", err)
		}
		cert.Methods = []string{
			"deletion of every row of the tenant in every table of the store (" + string(s.DB.Dialect()) + "), but its shredding records, kept so that a restore of an older backup re-applies them",
			"crypto-shredding: the tenant's data keys overwritten then deleted, so that its ciphertexts in any copy or backup cannot be decrypted",
		}
		if s.DB.Dialect() == store.SQLite {
			cert.Methods = append(cert.Methods, "SQLite secure_delete: freed cells overwritten with zeros")
		}
		body, err := json.Marshal(cert)
		if err != nil {
			return err
		}
		if _, err := p.Exec(ctx, `UPDATE tenant_destructions SET state = 'done', done_at = $2, certificate = $3 WHERE tenant_id = $1`,
			t.ID, store.Micros(cert.DestroyedAt), string(body)); err != nil {
			return err
		}
		rec, err := audit.AppendSequenced(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "tenant.destroy", ObjectType: "tenant", ObjectID: t.ID,
			Details: map[string]any{"slug": t.Slug, "rows": cert.TotalRows, "keys_shredded": len(cert.KeysShredded), "backup_sets": len(cert.BackupSets)}})
		if err != nil {
			return err
		}
		cert.PlatformAuditSeq = rec.Seq
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.Keyring.Forget(t.ID)
	// Backups come after the store, so that nothing irreversible happens
	// before the checks of the transaction; the keys are already shredded,
	// so the sets' content is unreadable whatever happens to them.
	switch {
	case s.Backups == nil:
		cert.Backups = "no backup service configured on this platform"
	default:
		sets, err := s.Backups.DestroyTenantBackups(ctx, t.ID)
		if err != nil {
			cert.Backups = "the backup service failed to delete or expire the tenant's sets (" + err.Error() +
				"); their content is sealed under the shredded tenant keys; delete them with the backup tools"
		} else {
			cert.BackupSets = sets
			cert.Backups = "backup sets deleted or left to expire; their content is sealed under the shredded tenant keys"
		}
	}
	if cert.BackupSets == nil {
		cert.BackupSets = []BackupSet{}
	}
	return s.signCertificate(ctx, cert)
}
