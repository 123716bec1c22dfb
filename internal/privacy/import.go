package privacy

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ImportResult summarises an import.
type ImportResult struct {
	Counts map[string]int64 `json:"counts"`
	// SourceTenant is the tenant the export came from.
	SourceTenant string `json:"source_tenant"`
}

// businessTables must be empty in an import target.
var businessTables = []string{"contacts", "users", "messages", "lists", "segments", "templates", "campaigns", "connectors"}

const maxManifest = 16 << 20

// readManifest reads the archive's first entry, manifest.json.
func readManifest(tr *tar.Reader) (Manifest, error) {
	h, err := tr.Next()
	if err != nil || h.Name != "manifest.json" {
		return Manifest{}, fmt.Errorf("%w: the archive does not start with manifest.json", ErrInvalid)
	}
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(tr, maxManifest))
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest.json: %v", ErrInvalid, err)
	}
	if m.Format != ExportFormat {
		return Manifest{}, fmt.Errorf("%w: format %q, want %q", ErrInvalid, m.Format, ExportFormat)
	}
	return m, nil
}

// VerifyArchive checks an export archive (decrypted) against its manifest:
// every file present once, with the size, SHA-256 and (JSON Lines) row
// count the manifest gives, and nothing else.
func VerifyArchive(r io.Reader) (Manifest, error) {
	tr := tar.NewReader(r)
	m, err := readManifest(tr)
	if err != nil {
		return m, err
	}
	want := map[string]ManifestFile{}
	for _, f := range m.Files {
		want[f.Path] = f
	}
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: the archive is cut or damaged: %v", ErrInvalid, err)
		}
		f, ok := want[h.Name]
		if !ok || seen[h.Name] {
			return m, fmt.Errorf("%w: %s is not in the manifest (or repeated)", ErrInvalid, h.Name)
		}
		seen[h.Name] = true
		sum := sha256.New()
		lines := &lineCounter{}
		// At most one byte more than the manifest announces: a longer entry
		// fails the size check without being read whole.
		n, err := io.Copy(io.MultiWriter(sum, lines), io.LimitReader(tr, f.Bytes+1))
		if err != nil {
			return m, fmt.Errorf("%w: read %s: %v", ErrInvalid, h.Name, err)
		}
		if n != f.Bytes || hex.EncodeToString(sum.Sum(nil)) != f.SHA256 {
			return m, fmt.Errorf("%w: %s does not match its SHA-256 in the manifest", ErrInvalid, h.Name)
		}
		if strings.HasSuffix(h.Name, ".jsonl") && strings.HasPrefix(h.Name, "data/") && lines.n != f.Rows {
			return m, fmt.Errorf("%w: %s has %d rows, the manifest says %d", ErrInvalid, h.Name, lines.n, f.Rows)
		}
	}
	for _, f := range m.Files {
		if !seen[f.Path] {
			return m, fmt.Errorf("%w: %s is missing (the archive is cut)", ErrInvalid, f.Path)
		}
	}
	return m, nil
}

type lineCounter struct{ n int64 }

func (l *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			l.n++
		}
	}
	return len(p), nil
}

// Import loads an export archive into an empty tenant, sealing every
// personal field under the target's own key. open is called twice: once to
// verify the whole archive against its manifest, then to load it, in one
// transaction (all or nothing). The target's built-in rows (roles,
// settings) are replaced by the export's.
func (s *Service) Import(ctx context.Context, target tenants.Tenant, open func() (io.ReadCloser, error)) (ImportResult, error) {
	rc, err := open()
	if err != nil {
		return ImportResult{}, err
	}
	m, err := VerifyArchive(rc)
	_ = rc.Close()
	if err != nil {
		return ImportResult{}, err
	}
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return ImportResult{}, err
	}
	byName := map[string]table{}
	for _, t := range tabs {
		byName[t.Name] = t
	}
	for name := range m.Counts {
		if _, ok := byName[name]; !ok || excludedTables[name] {
			return ImportResult{}, fmt.Errorf("%w: table %s of the export is not in this store's schema", ErrInvalid, name)
		}
	}
	cr, err := s.crypto(ctx, target.ID)
	if err != nil {
		return ImportResult{}, err
	}
	rc, err = open()
	if err != nil {
		return ImportResult{}, err
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	if _, err := readManifest(tr); err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Counts: map[string]int64{}, SourceTenant: m.TenantID}
	files := map[string]ManifestFile{}
	for _, f := range m.Files {
		files[f.Path] = f
	}
	err = s.DB.Tenant(target.ID).Tx(ctx, func(tx *store.Tx) error {
		for _, bt := range businessTables {
			if _, ok := byName[bt]; !ok {
				continue
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+quoteIdent(bt)+` WHERE tenant_id = $1`).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: %s has %d rows; import into a new tenant", ErrNotEmpty, bt, n)
			}
		}
		// Replace the built-in rows a new tenant starts with.
		for i := len(tabs) - 1; i >= 0; i-- {
			t := tabs[i]
			if excludedTables[t.Name] {
				continue
			}
			if _, ok := m.Counts[t.Name]; !ok {
				continue
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(t.Name)+` WHERE tenant_id = $1`); err != nil {
				return fmt.Errorf("privacy: clear %s: %w", t.Name, err)
			}
		}
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			if !strings.HasPrefix(h.Name, "data/") || !strings.HasSuffix(h.Name, ".jsonl") {
				continue
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "data/"), ".jsonl")
			t, ok := byName[name]
			f, listed := files[h.Name]
			if !ok || !listed {
				return fmt.Errorf("%w: %s is not in the manifest", ErrInvalid, h.Name)
			}
			ocs := exportCols(t)
			// The file is read again: check it is still the one verified.
			sum := sha256.New()
			in := io.TeeReader(io.LimitReader(tr, f.Bytes+1), sum)
			n, err := loadTable(ctx, tx, cr, t, ocs, in, func(r record) (record, error) { return r, nil })
			if err != nil {
				return err
			}
			if hex.EncodeToString(sum.Sum(nil)) != f.SHA256 {
				return fmt.Errorf("%w: %s changed since it was verified", ErrInvalid, h.Name)
			}
			res.Counts[name] = n
		}
		details := map[string]any{"format": ExportFormat, "source_tenant": m.TenantID, "counts": res.Counts}
		if dropped, err := dropOrphans(ctx, tx, byName); err != nil {
			return err
		} else if len(dropped) > 0 {
			for name, n := range dropped {
				res.Counts[name] -= n
			}
			details["orphans_dropped"] = dropped
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "tenant.import", ObjectType: "tenant", ObjectID: target.ID,
			Details: details})
		return err
	})
	if err != nil {
		return ImportResult{}, err
	}
	s.Keyring.Forget(target.ID)
	return res, nil
}

// loadTable reads JSON Lines records from r, passes each through fix, and
// inserts them into t in batches.
func loadTable(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, t table, ocs []outCol, r io.Reader, fix func(record) (record, error)) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var batch [][]any
	var n int64
	flush := func() error {
		err := insertRows(ctx, tx, t, insertCols(t, ocs), batch)
		batch = batch[:0]
		return err
	}
	for sc.Scan() {
		rec, err := parseRecord(sc.Bytes())
		if err != nil {
			return n, fmt.Errorf("%w: %s line %d: %v", ErrInvalid, t.Name, n+1, err)
		}
		if rec, err = fix(rec); err != nil {
			return n, err
		}
		vals, err := decodeRecord(cr, t, ocs, rec)
		if err != nil {
			return n, fmt.Errorf("%w: %s line %d: %v", ErrInvalid, t.Name, n+1, err)
		}
		batch = append(batch, vals)
		n++
		if len(batch) >= 200 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("%w: %s: %v", ErrInvalid, t.Name, err)
	}
	return n, flush()
}

// dropOrphans deletes the imported rows of a companion table (copiedWith)
// whose owner row is not in the archive: an export reads its tables one
// after the other, so a message purged between its contents and its
// messages leaves an orphan content row. Imported, such a row would be in
// the backups' checksums but in no incremental (its insert is logged only
// with its message's), and nothing reads it. It returns how many rows of
// each table it deleted.
func dropOrphans(ctx context.Context, tx *store.Tx, byName map[string]table) (map[string]int64, error) {
	dropped := map[string]int64{}
	for name, c := range copiedWith {
		if _, ok := byName[name]; !ok {
			continue
		}
		if _, ok := byName[c.owner]; !ok {
			continue
		}
		r, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(name)+` WHERE tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM `+quoteIdent(c.owner)+` o WHERE o.tenant_id = $1 AND o.`+quoteIdent(c.ownerCol)+` = `+quoteIdent(name)+`.`+quoteIdent(c.col)+`)`)
		if err != nil {
			return nil, fmt.Errorf("privacy: drop %s rows without their %s: %w", name, c.owner, err)
		}
		if n, err := r.RowsAffected(); err == nil && n > 0 {
			dropped[name] = n
		}
	}
	return dropped, nil
}
