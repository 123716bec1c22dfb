package tenants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// SealedColumn names personal fields sealed with a tenant's field cipher, so
// that a data-key rotation can re-encrypt them. Every table that stores a
// value made by Crypto.Seal must be listed in [SealedColumns].
type SealedColumn struct {
	Table string
	// Key is the primary key without tenant_id (TEXT columns).
	Key []string
	// Columns maps each sealed column to the field name given to Seal.
	// Values sealed under a per-contact key (ContactKeyVersion) are left
	// alone: rotation re-seals the contact keys themselves (key_enc).
	Columns [][2]string
}

// SealedColumns lists every sealed column, in the order rotation walks them.
var SealedColumns = []SealedColumn{
	{Table: "users", Key: []string{"id"}, Columns: [][2]string{{"email_enc", "user.email"}, {"name_enc", "user.name"}, {"totp_secret_enc", "user.totp"}}},
	{Table: "contacts", Key: []string{"id"}, Columns: [][2]string{{"email_enc", "contact.email"}, {"phone_enc", "contact.phone"},
		{"first_name_enc", "contact.first_name"}, {"last_name_enc", "contact.last_name"}, {"attributes_enc", "contact.attributes"},
		{"key_enc", contactKeyField}}},
	{Table: "consents", Key: []string{"contact_id", "channel", "purpose"}, Columns: [][2]string{{"source_ip_enc", "consent.source_ip"}}},
	{Table: "consent_events", Key: []string{"id"}, Columns: [][2]string{{"source_ip_enc", "consent.source_ip"}}},
	{Table: "connectors", Key: []string{"id"}, Columns: [][2]string{{"config_enc", "connector.config"}}},
	{Table: "messages", Key: []string{"id"}, Columns: [][2]string{{"recipient_enc", "message.to"}}},
	{Table: "message_contents", Key: []string{"message_id"}, Columns: [][2]string{{"content_enc", "message.content"}}},
	// Single sign-on secrets (issue 11): the OIDC client secret and the SAML
	// SP private key.
	{Table: "sso_providers", Key: []string{"id"}, Columns: [][2]string{{"secret_enc", "sso.client_secret"}, {"sp_key_enc", "sso.sp_key"}}},
}

// Sealed with the tenant key but not in a column, so not re-encrypted by a
// rotation: the per-file key in the header of each stored SFTP file
// (internal/sftpd, field "sftp.file_key"). Those files are transient (kept
// for sftp.retention); a rotation retires the old key version, which stays
// readable, so they still open; destroying the keys shreds them too.

// KeyVersion is one of a tenant's data-key versions.
type KeyVersion struct {
	Version     int       `json:"version"`
	State       string    `json:"state"` // active, retired (readable), destroyed
	MasterKeyID string    `json:"master_key_id"`
	CreatedAt   time.Time `json:"created_at"`
	AgeDays     int       `json:"age_days"`
}

// Rotation is a tenant data-key rotation and its progress.
type Rotation struct {
	ToVersion  int        `json:"to_version"`
	State      string     `json:"state"` // running, done
	RowsDone   int64      `json:"rows_done"`
	Table      string     `json:"table,omitempty"` // where it is
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// KeyStatus is what `relais keys status --tenant` shows.
type KeyStatus struct {
	TenantID  string       `json:"tenant_id"`
	Shredded  bool         `json:"shredded"`
	Versions  []KeyVersion `json:"versions"`
	Rotations []Rotation   `json:"rotations"`
}

// KeyStatus returns the tenant's key versions and rotations.
func (s *Service) KeyStatus(ctx context.Context, tenantID string) (KeyStatus, error) {
	st := KeyStatus{TenantID: tenantID}
	now := s.DB.Now()
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rs, err := tx.Query(ctx, `SELECT version, state, master_key_id, created_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`)
		if err != nil {
			return err
		}
		destroyed := 0
		for rs.Next() {
			var v KeyVersion
			var created int64
			if err := rs.Scan(&v.Version, &v.State, &v.MasterKeyID, &created); err != nil {
				_ = rs.Close()
				return err
			}
			v.CreatedAt = store.FromMicros(created)
			v.AgeDays = int(now.Sub(v.CreatedAt).Hours() / 24)
			if v.State == "destroyed" {
				destroyed++
			}
			st.Versions = append(st.Versions, v)
		}
		_ = rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		st.Shredded = destroyed > 0 && destroyed == len(st.Versions)
		rs, err = tx.Query(ctx, `SELECT to_version, state, cursor, rows_done, started_at, finished_at FROM key_rotations WHERE tenant_id = $1 ORDER BY to_version`)
		if err != nil {
			return err
		}
		defer func() { _ = rs.Close() }()
		for rs.Next() {
			var r Rotation
			var cur string
			var started int64
			var finished *int64
			if err := rs.Scan(&r.ToVersion, &r.State, &cur, &r.RowsDone, &started, &finished); err != nil {
				return err
			}
			r.StartedAt = store.FromMicros(started)
			if finished != nil {
				t := store.FromMicros(*finished)
				r.FinishedAt = &t
			}
			if c, err := parseCursor(cur); err == nil && r.State == "running" && c.Table < len(SealedColumns) {
				r.Table = SealedColumns[c.Table].Table
			}
			st.Rotations = append(st.Rotations, r)
		}
		return rs.Err()
	})
	if err != nil {
		return KeyStatus{}, fmt.Errorf("key status: %w", err)
	}
	if len(st.Versions) == 0 {
		return KeyStatus{}, fmt.Errorf("%w: %q", ErrNotFound, tenantID)
	}
	return st, nil
}

// StartRotation creates a new data-key version for the tenant, makes it the
// active one (new fields are sealed with it), and records a running
// rotation; the older versions stay readable. If a rotation is already
// running, it returns that one's version instead, so a re-run resumes. Run
// [Service.RunRotation] next (it is what does the re-encryption).
func (s *Service) StartRotation(ctx context.Context, tenantID string) (int, error) {
	var running, maxVersion int
	var shredded bool
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT to_version FROM key_rotations WHERE tenant_id = $1 AND state = 'running'`).Scan(&running)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0), COUNT(CASE WHEN state <> 'destroyed' THEN 1 END) FROM tenant_keys WHERE tenant_id = $1`).Scan(&maxVersion, &live); err != nil {
			return err
		}
		shredded = maxVersion > 0 && live == 0
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("start key rotation: %w", err)
	}
	switch {
	case running > 0:
		return running, nil
	case maxVersion == 0:
		return 0, fmt.Errorf("%w: %q", ErrNotFound, tenantID)
	case shredded:
		return 0, fmt.Errorf("start key rotation: tenant %q: %w", tenantID, ErrShredded)
	}
	// The master key in use must open the tenant's keys before a new version
	// is made under it: a wrong master key would otherwise add a key version
	// that the right one cannot open.
	if _, err := (&Keyring{db: s.DB, master: s.Master, now: s.DB.Now}).load(ctx, tenantID); err != nil {
		return 0, fmt.Errorf("start key rotation: nothing changed: %w", err)
	}
	version := maxVersion + 1
	dk, err := keys.NewDataKey()
	if err != nil {
		return 0, err
	}
	defer dk.Destroy()
	mk := keys.ForTenant(s.Master, tenantID)
	wrapped, err := keys.WrapDataKey(ctx, mk, tenantID, version, dk)
	if err != nil {
		return 0, fmt.Errorf("start key rotation: %w", err)
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := store.Micros(tx.Now())
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_keys (tenant_id, version, master_key_id, wrapped, state, created_at) VALUES ($1, $2, $3, $4, 'active', $5)`,
			version, mk.ID(), wrapped, now); err != nil {
			return fmt.Errorf("insert key version: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_keys SET state = 'retired' WHERE tenant_id = $1 AND state = 'active' AND version <> $2`, version); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO key_rotations (tenant_id, to_version, state, cursor, rows_done, started_at, updated_at) VALUES ($1, $2, 'running', '', 0, $3, $3)`,
			version, now); err != nil {
			return fmt.Errorf("insert key rotation: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryKey, Action: "key.rotate.start", ObjectType: "tenant_key",
			ObjectID: strconv.Itoa(version), Details: map[string]any{"master_key_id": mk.ID(), "from_version": maxVersion}})
		return err
	})
	if store.IsUniqueViolation(err) {
		return 0, fmt.Errorf("start key rotation: another rotation started at the same time; run it again to resume it")
	}
	if err != nil {
		return 0, fmt.Errorf("start key rotation: %w", err)
	}
	return version, nil
}

// RotationProgress is reported after each batch.
type RotationProgress struct {
	Table    string
	RowsDone int64 // rows looked at, over the whole rotation
}

// RunOptions tune [Service.RunRotation].
type RunOptions struct {
	// BatchSize is the number of rows per transaction (default 500).
	BatchSize int
	// Progress, if set, is called after each committed batch.
	Progress func(RotationProgress)
}

type rotationCursor struct {
	Table int      `json:"t"`
	Key   []string `json:"k,omitempty"`
}

func parseCursor(s string) (rotationCursor, error) {
	var c rotationCursor
	if s == "" {
		return c, nil
	}
	err := json.Unmarshal([]byte(s), &c)
	return c, err
}

// RunRotation re-encrypts, batch by batch, every sealed field of the tenant
// that is not yet under the rotation's key version, then marks the rotation
// done. Each batch commits with the cursor, so a run killed at any point
// resumes where it stopped; reads keep working throughout, since every
// version stays readable. It returns at once if no rotation is running.
func (s *Service) RunRotation(ctx context.Context, kr *Keyring, tenantID string, o RunOptions) error {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	var to int
	var cur string
	var done int64
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT to_version, cursor, rows_done FROM key_rotations WHERE tenant_id = $1 AND state = 'running'`).Scan(&to, &cur, &done)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("key rotation: %w", err)
	}
	c, err := parseCursor(cur)
	if err != nil {
		return fmt.Errorf("key rotation: bad cursor: %w", err)
	}
	kr.Forget(tenantID)
	cr, err := kr.load(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("key rotation: %w", err)
	}
	if cr.active != to {
		return fmt.Errorf("key rotation: the active key version is %d, the rotation's %d", cr.active, to)
	}
	for c.Table < len(SealedColumns) {
		if err := ctx.Err(); err != nil {
			return err
		}
		sc := SealedColumns[c.Table]
		n, last, err := s.rotateBatch(ctx, cr, tenantID, sc, c.Key, o.BatchSize)
		if err != nil {
			return fmt.Errorf("key rotation of %s: %w", sc.Table, err)
		}
		done += int64(n)
		if n < o.BatchSize {
			c = rotationCursor{Table: c.Table + 1}
		} else {
			c.Key = last
		}
		next, _ := json.Marshal(c)
		err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE key_rotations SET cursor = $2, rows_done = $3, updated_at = $4 WHERE tenant_id = $1 AND to_version = $5`,
				string(next), done, store.Micros(tx.Now()), to)
			return err
		})
		if err != nil {
			return fmt.Errorf("key rotation: save progress: %w", err)
		}
		if o.Progress != nil {
			o.Progress(RotationProgress{Table: sc.Table, RowsDone: done})
		}
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := store.Micros(tx.Now())
		if _, err := tx.Exec(ctx, `UPDATE key_rotations SET state = 'done', finished_at = $2, updated_at = $2 WHERE tenant_id = $1 AND to_version = $3 AND state = 'running'`,
			now, to); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryKey, Action: "key.rotate.done", ObjectType: "tenant_key",
			ObjectID: strconv.Itoa(to), Details: map[string]any{"rows": done}})
		return err
	})
	if err != nil {
		return fmt.Errorf("key rotation: finish: %w", err)
	}
	kr.Forget(tenantID)
	return nil
}

// rotateBatch re-encrypts up to limit rows of sc after the key after, in one
// transaction. It returns how many rows it read and the last row's key.
func (s *Service) rotateBatch(ctx context.Context, cr *Crypto, tenantID string, sc SealedColumn, after []string, limit int) (int, []string, error) {
	cols := make([]string, 0, len(sc.Key)+len(sc.Columns))
	cols = append(cols, sc.Key...)
	for _, c := range sc.Columns {
		cols = append(cols, c[0])
	}
	q := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + sc.Table + ` WHERE tenant_id = $1`
	args := []any{}
	if len(after) == len(sc.Key) {
		ph := make([]string, len(after))
		for i, v := range after {
			args = append(args, v)
			ph[i] = "$" + strconv.Itoa(i+2)
		}
		q += ` AND (` + strings.Join(sc.Key, ", ") + `) > (` + strings.Join(ph, ", ") + `)`
	}
	q += ` ORDER BY ` + strings.Join(sc.Key, ", ") + ` LIMIT ` + strconv.Itoa(limit)
	n := 0
	var last []string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		type upd struct {
			key  []string
			sets [][3]any // column, new, old
		}
		var todo []upd
		rs, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		for rs.Next() {
			key := make([]string, len(sc.Key))
			vals := make([][]byte, len(sc.Columns))
			dest := make([]any, 0, len(cols))
			for i := range key {
				dest = append(dest, &key[i])
			}
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			if err := rs.Scan(dest...); err != nil {
				_ = rs.Close()
				return err
			}
			n++
			last = key
			u := upd{key: key}
			for i, v := range vals {
				if len(v) == 0 {
					continue
				}
				ver, err := keys.KeyVersionOf(v)
				if err != nil || ver == cr.active || ver == ContactKeyVersion {
					continue // malformed, already done, or under a contact's key
				}
				field := sc.Columns[i][1]
				pt, err := cr.Open(field, v)
				if err != nil {
					_ = rs.Close()
					return fmt.Errorf("open %s.%s: %w", sc.Table, sc.Columns[i][0], err)
				}
				nv, err := cr.Seal(field, pt)
				clear(pt)
				if err != nil {
					_ = rs.Close()
					return err
				}
				u.sets = append(u.sets, [3]any{sc.Columns[i][0], nv, v})
			}
			if len(u.sets) > 0 {
				todo = append(todo, u)
			}
		}
		_ = rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		for _, u := range todo {
			var set, where []string
			uargs := []any{}
			p := 2
			for _, st := range u.sets {
				set = append(set, st[0].(string)+" = $"+strconv.Itoa(p))
				uargs = append(uargs, st[1])
				p++
			}
			for i, k := range sc.Key {
				where = append(where, k+" = $"+strconv.Itoa(p))
				uargs = append(uargs, u.key[i])
				p++
			}
			// Only if unchanged since read: a concurrent writer's newer
			// value (sealed with the active key) wins.
			for _, st := range u.sets {
				where = append(where, st[0].(string)+" = $"+strconv.Itoa(p))
				uargs = append(uargs, st[2])
				p++
			}
			if _, err := tx.Exec(ctx, `UPDATE `+sc.Table+` SET `+strings.Join(set, ", ")+` WHERE tenant_id = $1 AND `+strings.Join(where, " AND "), uargs...); err != nil {
				return err
			}
		}
		return nil
	})
	return n, last, err
}

// DestroyKeys crypto-shreds a tenant (REV-3): every version of its data key
// is destroyed (wrapped bytes erased, state 'destroyed'; the per-contact keys,
// sealed by it, go with it), the tenant disabled, and a shredding record and audit events
// written, in one transaction; then the provider's per-tenant master key is
// destroyed where there is one (Vault transit, PKCS#11), so that the wrapped
// copies in older backups cannot be unwrapped either. It is idempotent: run
// it again if the provider step failed.
func (s *Service) DestroyKeys(ctx context.Context, ref, reason string) (Tenant, error) {
	t, err := s.Get(ctx, ref)
	if err != nil {
		return Tenant{}, err
	}
	err = s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		_, err := s.destroyKeysTx(ctx, ptx, t.ID, reason)
		return err
	})
	if err != nil {
		return Tenant{}, err
	}
	if d, ok := keys.ForTenant(s.Master, t.ID).(keys.Destroyer); ok && keys.ForTenant(s.Master, t.ID) != s.Master {
		if err := d.Destroy(ctx); err != nil {
			return Tenant{}, fmt.Errorf("the tenant's keys are destroyed in the store, but the master key provider failed to destroy its per-tenant key (run the command again): %w", err)
		}
	}
	t.Status = StatusDisabled
	return t, nil
}

// destroyKeysTx marks every live data key of the tenant destroyed (wrapped
// bytes erased), disables the tenant, and writes the shredding record and
// audit events, in ptx. It returns descriptions of the keys destroyed (none
// when already shredded).
func (s *Service) destroyKeysTx(ctx context.Context, ptx *store.PlatformTx, tenantID, reason string) ([]string, error) {
	tx := ptx.Tenant(tenantID)
	now := ptx.Now()
	mkID := keys.ForTenant(s.Master, tenantID).ID()
	var ids []string
	rs, err := tx.Query(ctx, `SELECT version, master_key_id FROM tenant_keys WHERE tenant_id = $1 AND state <> 'destroyed' ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("destroy tenant keys: %w", err)
	}
	for rs.Next() {
		var v int
		var by string
		if err := rs.Scan(&v, &by); err != nil {
			_ = rs.Close()
			return nil, err
		}
		ids = append(ids, fmt.Sprintf("tenant-data-key %s v%d (wrapped by master key %s)", tenantID, v, by))
	}
	_ = rs.Close()
	if err := rs.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil // already shredded
	}
	if _, err := tx.Exec(ctx, `UPDATE tenant_keys SET state = 'destroyed', wrapped = $2 WHERE tenant_id = $1 AND state <> 'destroyed'`, []byte{}); err != nil {
		return nil, fmt.Errorf("destroy tenant keys: %w", err)
	}
	if _, err := ptx.Exec(ctx, `UPDATE tenants SET status = $1, updated_at = $2 WHERE id = $3`, StatusDisabled, store.Micros(now), tenantID); err != nil {
		return nil, err
	}
	actor := audit.MetaFrom(ctx).Actor
	if _, err := tx.Exec(ctx, `INSERT INTO shredding_records (tenant_id, id, kind, subject_id, reason, actor, at) VALUES ($1, $2, 'tenant', '', $3, $4, $5)`,
		uuid.NewString(), reason, actor.Type+":"+actor.ID, store.Micros(now)); err != nil {
		return nil, fmt.Errorf("record shredding: %w", err)
	}
	if mk := keys.ForTenant(s.Master, tenantID); mk != s.Master {
		if _, ok := mk.(keys.Destroyer); ok {
			ids = append(ids, "tenant master key "+mkID)
		}
	}
	ev := audit.Event{Category: audit.CategoryKey, Action: "key.destroy", ObjectType: "tenant", ObjectID: tenantID,
		Details: map[string]any{"versions": len(ids), "reason": reason, "master_key_id": mkID}}
	if _, err := audit.Append(ctx, ptx.Tenant(""), ev); err != nil {
		return nil, err
	}
	if _, err := audit.Append(ctx, tx, ev); err != nil {
		return nil, err
	}
	return ids, nil
}

// ShredTenantKeys is the privacy workflow's TenantKeyShredder (destruction,
// REV-3): it destroys the tenant's data keys inside the destruction's
// platform transaction, as DestroyKeys does, and the provider's per-tenant
// master key (Vault, PKCS#11) once that transaction has committed. It
// returns the keys destroyed. The shredding_records rows must survive the
// destruction's deletion of the tenant's rows.
func (s *Service) ShredTenantKeys(ctx context.Context, ptx *store.PlatformTx, tenantID string) ([]string, error) {
	ids, err := s.destroyKeysTx(ctx, ptx, tenantID, "tenant destruction")
	if err != nil {
		return nil, err
	}
	if mk := keys.ForTenant(s.Master, tenantID); mk != s.Master {
		if d, ok := mk.(keys.Destroyer); ok {
			ptx.AfterCommit(func() {
				// Best effort after commit; re-run `relais tenant destroy-keys`
				// if the provider was unreachable (it is idempotent).
				_ = d.Destroy(context.WithoutCancel(ctx))
			})
		}
	}
	return ids, nil
}

// RotateMaster re-wraps every live tenant data key under a new master-key
// version: for the key file, a new key file (the old one is kept as
// master.key.retired-<id> for older backups); for Vault and PKCS#11, a new
// version of the platform key and of each tenant's key. Re-running after an
// interruption finishes the job. progress, if set, is called per tenant.
// platform re-wraps the platform-level keys that other packages keep (token
// and audit signing keys), under the same new version, before a key file
// rotation is committed.
func (s *Service) RotateMaster(ctx context.Context, progress func(tenant Tenant, rewrapped int),
	platform ...func(context.Context, keys.MasterKey) (int, error)) (string, error) {
	rot, ok := s.Master.(keys.Rotator)
	if !ok {
		return "", fmt.Errorf("the master key provider %T cannot rotate", s.Master)
	}
	newID, err := rot.Rotate(ctx)
	if err != nil {
		return "", err
	}
	list, err := s.List(ctx)
	if err != nil {
		return "", err
	}
	total := 0
	for _, t := range list {
		mk := keys.ForTenant(s.Master, t.ID)
		var rows []wrappedKey
		err := s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
			rs, err := tx.Query(ctx, `SELECT version, wrapped FROM tenant_keys WHERE tenant_id = $1 AND state <> 'destroyed' ORDER BY version`)
			if err != nil {
				return err
			}
			defer func() { _ = rs.Close() }()
			for rs.Next() {
				var w wrappedKey
				if err := rs.Scan(&w.version, &w.wrapped); err != nil {
					return err
				}
				rows = append(rows, w)
			}
			return rs.Err()
		})
		if err != nil {
			return "", fmt.Errorf("tenant %s: %w", t.Slug, err)
		}
		if len(rows) == 0 {
			continue // shredded
		}
		if mk != s.Master {
			if r, ok := mk.(keys.Rotator); ok {
				if _, err := r.Rotate(ctx); err != nil {
					return "", fmt.Errorf("tenant %s: %w", t.Slug, err)
				}
			}
		}
		for i, w := range rows {
			nw, err := keys.RewrapDataKey(ctx, mk, t.ID, w.version, w.wrapped)
			if err != nil {
				return "", fmt.Errorf("tenant %s: %w", t.Slug, err)
			}
			rows[i].wrapped = nw
		}
		err = s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
			for _, w := range rows {
				if _, err := tx.Exec(ctx, `UPDATE tenant_keys SET wrapped = $2, master_key_id = $3 WHERE tenant_id = $1 AND version = $4 AND state <> 'destroyed'`,
					w.wrapped, mk.ID(), w.version); err != nil {
					return err
				}
			}
			_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryKey, Action: "key.rewrap", ObjectType: "tenant_key",
				Details: map[string]any{"master_key_id": mk.ID(), "versions": len(rows)}})
			return err
		})
		if err != nil {
			return "", fmt.Errorf("tenant %s: %w", t.Slug, err)
		}
		total += len(rows)
		if progress != nil {
			progress(t, len(rows))
		}
	}
	for _, rw := range platform {
		if _, err := rw(ctx, s.Master); err != nil {
			return "", err
		}
	}
	if c, ok := s.Master.(interface{ CommitRotation(context.Context) error }); ok {
		if err := c.CommitRotation(ctx); err != nil {
			return "", err
		}
	}
	err = s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		_, err := audit.Append(ctx, ptx.Tenant(""), audit.Event{Category: audit.CategoryKey, Action: "key.master.rotate", ObjectType: "master_key",
			ObjectID: newID, Details: map[string]any{"rewrapped": total, "tenants": len(list)}})
		return err
	})
	return newID, err
}

// ShreddingRecord says that a tenant's keys, or one contact's key, were
// destroyed.
type ShreddingRecord struct {
	TenantID  string    `json:"tenant_id"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // tenant or contact
	SubjectID string    `json:"subject_id,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	At        time.Time `json:"at"`
}

// ShreddingRecords lists every shredding record of the platform, oldest
// first. A restore reads them from the live store before it replaces it, and
// gives them to [Service.ReapplyShredding] afterwards.
func (s *Service) ShreddingRecords(ctx context.Context) ([]ShreddingRecord, error) {
	var out []ShreddingRecord
	err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		rs, err := ptx.Query(ctx, `SELECT tenant_id, id, kind, subject_id, reason, actor, at FROM shredding_records ORDER BY at, id`)
		if err != nil {
			return err
		}
		defer func() { _ = rs.Close() }()
		for rs.Next() {
			var r ShreddingRecord
			var at int64
			if err := rs.Scan(&r.TenantID, &r.ID, &r.Kind, &r.SubjectID, &r.Reason, &r.Actor, &at); err != nil {
				return err
			}
			r.At = store.FromMicros(at)
			out = append(out, r)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read shredding records: %w", err)
	}
	return out, nil
}

// ReapplyShredding is the restore side of the crypto-shredding contract:
// after a backup is restored, every shredding record of the live store taken
// before the restore is applied again (a tenant's keys destroyed, a contact's
// key deleted) and copied into the restored store, so that restoring an
// older backup never brings a shredded key back. It is idempotent.
func (s *Service) ReapplyShredding(ctx context.Context, records []ShreddingRecord) error {
	for _, r := range records {
		err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
			tx := ptx.Tenant(r.TenantID)
			switch r.Kind {
			case "tenant":
				if _, err := tx.Exec(ctx, `UPDATE tenant_keys SET state = 'destroyed', wrapped = $2 WHERE tenant_id = $1`, []byte{}); err != nil {
					return err
				}
			case "contact":
				if _, err := tx.Exec(ctx, ShredContactSQL, r.SubjectID); err != nil {
					return err
				}
			default:
				return fmt.Errorf("unknown shredding record kind %q", r.Kind)
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM shredding_records WHERE tenant_id = $1 AND id = $2`, r.ID).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO shredding_records (tenant_id, id, kind, subject_id, reason, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
					r.ID, r.Kind, r.SubjectID, r.Reason, r.Actor, store.Micros(r.At)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("re-apply shredding record %s: %w", r.ID, err)
		}
	}
	if len(records) > 0 {
		// Destroy the provider's per-tenant keys again too (idempotent).
		for _, r := range records {
			if r.Kind != "tenant" {
				continue
			}
			if mk := keys.ForTenant(s.Master, r.TenantID); mk != s.Master {
				if d, ok := mk.(keys.Destroyer); ok {
					if err := d.Destroy(ctx); err != nil {
						return fmt.Errorf("re-apply shredding of tenant %s: %w", r.TenantID, err)
					}
				}
			}
		}
	}
	return nil
}

// ShredContactSQL erases one contact's key and everything that could still
// find or read the person: the key, the blind indexes and the sealed fields
// ($1 the tenant, $2 the contact). Fields of older backups under that key can
// no longer be opened once a restore re-applies the shredding record.
const ShredContactSQL = `UPDATE contacts SET key_enc = NULL, email_bidx = NULL, phone_bidx = NULL, email_enc = NULL,
	phone_enc = NULL, first_name_enc = NULL, last_name_enc = NULL, attributes_enc = NULL WHERE tenant_id = $1 AND id = $2`

// ResumeRotations runs every unfinished data-key rotation of the platform
// (one left behind by an interrupted `relais keys rotate`), one tenant after
// the other. Serve calls it periodically, so a rotation always completes.
// Several nodes may run it at once: each batch only replaces values still
// under an older version, so the work is idempotent.
func (s *Service) ResumeRotations(ctx context.Context, kr *Keyring, o RunOptions) error {
	var ids []string
	err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		rs, err := ptx.Query(ctx, `SELECT DISTINCT tenant_id FROM key_rotations WHERE state = 'running' ORDER BY tenant_id`)
		if err != nil {
			return err
		}
		defer func() { _ = rs.Close() }()
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rs.Err()
	})
	if err != nil {
		return fmt.Errorf("resume key rotations: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := s.RunRotation(ctx, kr, id, o); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
