package privacy

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ExportFormat names the tenant export format (the manifest's "format").
//
// An export is a POSIX tar archive (then encrypted, see ExportOptions):
//
//	manifest.json            format, tenant, time, and for every file its path, table, rows, bytes, SHA-256
//	data/<table>.jsonl       one JSON object per row, columns in table order
//	data/<table>.csv         the same rows as CSV with a header line
//	audit/audit.jsonl        the tenant's audit trail (internal/audit ExportFormat), ending with a signed checkpoint
//
// Encrypted columns are decrypted and named without their "_enc" suffix;
// blind indexes are written "addr:<field>:<value>" when the value is known
// (a contact's or user's address), else "idx:<base64>"; blobs are base64.
// Credentials (password hashes, TOTP secrets, API client secrets),
// sessions and keys are not exported. CSV cells starting with = + - @ are
// prefixed with ' (spreadsheet formula injection); JSON Lines are exact and
// are what the importer reads.
const ExportFormat = "relais-tenant-export/1"

// ManifestFile describes one file of an export.
type ManifestFile struct {
	Path   string `json:"path"`
	Table  string `json:"table,omitempty"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Manifest is an export's manifest.json.
type Manifest struct {
	Format         string              `json:"format"`
	TenantID       string              `json:"tenant_id"`
	TenantSlug     string              `json:"tenant_slug"`
	TenantName     string              `json:"tenant_name"`
	ExportedAt     time.Time           `json:"exported_at"`
	Files          []ManifestFile      `json:"files"`
	Counts         map[string]int64    `json:"counts"`
	Columns        map[string][]string `json:"columns"`
	OpaqueColumns  []string            `json:"opaque_columns,omitempty"`
	ExcludedTables []string            `json:"excluded_tables"`
	AuditEvents    int64               `json:"audit_events"`
	// AuditVerifierKey is the tenant log's public key: with it,
	// `relais audit verify --export audit.jsonl --key KEY` checks the trail
	// offline, even once the tenant is destroyed.
	AuditVerifierKey string `json:"audit_verifier_key"`
	AuditCheckpoint  string `json:"audit_checkpoint"`
}

// ExportResult summarises a written export.
type ExportResult struct {
	Manifest Manifest `json:"manifest"`
	Bytes    int64    `json:"bytes"`
}

// scratch is a file of an export being written: its plaintext goes to a
// temporary file encrypted under a one-time key, so no decrypted personal
// data touches the disk, and its size and hash are known for the tar header.
type scratch struct {
	f     *os.File
	enc   io.WriteCloser
	key   []byte
	sum   hash.Hash
	n     int64
	rows  int64
	path  string
	table string
}

func newScratch(dir, path, table string) (*scratch, error) {
	f, err := os.CreateTemp(dir, "part-*")
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	enc, err := NewAESWriter(f, key)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &scratch{f: f, enc: enc, key: key, sum: sha256.New(), path: path, table: table}, nil
}

func (s *scratch) Write(p []byte) (int, error) {
	s.sum.Write(p)
	s.n += int64(len(p))
	return s.enc.Write(p)
}

func (s *scratch) finish() error { return s.enc.Close() }

func (s *scratch) copyTo(w io.Writer) error {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r, err := NewAESReader(bufio.NewReader(s.f), s.key)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err == nil && n != s.n {
		err = errors.New("privacy: scratch file size changed")
	}
	return err
}

func (s *scratch) close() {
	name := s.f.Name()
	_ = s.f.Close()
	_ = os.Remove(name)
	clear(s.key)
}

func (s *scratch) entry() ManifestFile {
	return ManifestFile{Path: s.path, Table: s.table, Rows: s.rows, Bytes: s.n, SHA256: hex.EncodeToString(s.sum.Sum(nil))}
}

const exportPage = 1000

// ExportTables writes every exported table of the tenant as JSON Lines and
// CSV through emit (one call per file), and returns the manifest entries.
func (s *Service) exportTables(ctx context.Context, tenantID string, tmp string) ([]*scratch, Manifest, error) {
	m := Manifest{Counts: map[string]int64{}, Columns: map[string][]string{}}
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return nil, m, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return nil, m, err
	}
	book, err := buildAddrBook(ctx, s.DB, cr, tenantID, tabs)
	if err != nil {
		return nil, m, err
	}
	var parts []*scratch
	fail := func(err error) ([]*scratch, Manifest, error) {
		for _, p := range parts {
			p.close()
		}
		return nil, m, err
	}
	for _, t := range tabs {
		if excludedTables[t.Name] {
			m.ExcludedTables = append(m.ExcludedTables, t.Name)
			continue
		}
		ocs := exportCols(t)
		names := make([]string, len(ocs))
		for i, oc := range ocs {
			names[i] = oc.name
			if oc.opaq {
				m.OpaqueColumns = append(m.OpaqueColumns, t.Name+"."+oc.src.Name)
			}
		}
		m.Columns[t.Name] = names
		jl, err := newScratch(tmp, "data/"+t.Name+".jsonl", t.Name)
		if err != nil {
			return fail(err)
		}
		parts = append(parts, jl)
		cs, err := newScratch(tmp, "data/"+t.Name+".csv", t.Name)
		if err != nil {
			return fail(err)
		}
		parts = append(parts, cs)
		cw := csv.NewWriter(cs)
		if err := cw.Write(names); err != nil {
			return fail(err)
		}
		emit := func(rec record) error {
			b, _ := rec.MarshalJSON()
			if _, err := jl.Write(append(b, '\n')); err != nil {
				return err
			}
			jl.rows++
			cs.rows++
			return cw.Write(csvCells(rec))
		}
		sorted := keyDependentOrder(t)
		var held []record
		if err := s.eachRow(ctx, tenantID, t, func(row []any, keyEnc []byte) error {
			fc, err := rowCipher(cr, t, keyEnc)
			if err != nil {
				return err
			}
			rec, err := encodeRow(fc, book, t, ocs, row)
			if err != nil {
				return err
			}
			if sorted {
				held = append(held, rec)
				return nil
			}
			return emit(rec)
		}); err != nil {
			return fail(err)
		}
		sortRecords(held)
		for _, rec := range held {
			if err := emit(rec); err != nil {
				return fail(err)
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fail(err)
		}
		if err := jl.finish(); err != nil {
			return fail(err)
		}
		if err := cs.finish(); err != nil {
			return fail(err)
		}
		m.Counts[t.Name] = jl.rows
	}
	return parts, m, nil
}

// eachRow reads every row of a tenant table (all stored columns minus
// tenant_id and the excluded ones, in exportCols order) in key order, one
// short transaction per page. fn also gets the row's own key (keyColumns;
// nil for other tables).
func (s *Service) eachRow(ctx context.Context, tenantID string, t table, fn func(row []any, keyEnc []byte) error) error {
	cols, nOut, ownKey := rowCols(t)
	nk := nOut
	if ownKey {
		nk++
	}
	var after []any
	for {
		var page [][]any
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			var err error
			page, err = readPage(ctx, tx, t, cols, after, exportPage)
			return err
		})
		if err != nil {
			return err
		}
		if err := eachOf(page, nOut, ownKey, fn); err != nil {
			return err
		}
		if len(page) < exportPage {
			return nil
		}
		after = page[len(page)-1][nk:]
	}
}

// eachRowWith is eachRow for the rows of t whose column col holds one of
// keys (in the order of t's primary key), read in one transaction.
func (s *Service) eachRowWith(ctx context.Context, tenantID string, t table, col string, keys []any, fn func(row []any, keyEnc []byte) error) error {
	c, ok := t.col(col)
	if !ok {
		return fmt.Errorf("privacy: %s has no column %s", t.Name, col)
	}
	cols, nOut, ownKey := rowCols(t)
	var rows [][]any
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		for lo := 0; lo < len(keys); lo += exportPage {
			page, err := readKeys(ctx, tx, t, cols, c, keys[lo:min(lo+exportPage, len(keys))])
			if err != nil {
				return err
			}
			rows = append(rows, page...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return eachOf(rows, nOut, ownKey, fn)
}

// rowCols are the columns eachRow reads of t: the nOut exported columns,
// the row's own key column when t has one (ownKey), then t's primary key.
func rowCols(t table) (cols []column, nOut int, ownKey bool) {
	ocs := exportCols(t)
	cols = make([]column, 0, len(ocs)+len(t.PK)+1)
	for _, oc := range ocs {
		cols = append(cols, oc.src)
	}
	kc, ownKey := keyColumn(t)
	if ownKey {
		cols = append(cols, kc)
	}
	for _, k := range pkOrder(t) {
		c, _ := t.col(k)
		cols = append(cols, c)
	}
	return cols, len(ocs), ownKey
}

// eachOf calls fn for each row read with rowCols's columns.
func eachOf(rows [][]any, nOut int, ownKey bool, fn func(row []any, keyEnc []byte) error) error {
	for _, row := range rows {
		var keyEnc []byte
		if ownKey {
			keyEnc, _ = row[nOut].([]byte)
		}
		if err := fn(row[:nOut], keyEnc); err != nil {
			return err
		}
	}
	return nil
}

func sortRecords(rs []record) {
	keys := make(map[int]string, len(rs))
	idx := make([]int, len(rs))
	for i, r := range rs {
		b, _ := r.MarshalJSON()
		keys[i] = string(b)
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	out := make([]record, len(rs))
	for i, j := range idx {
		out[i] = rs[j]
	}
	copy(rs, out)
}

func csvCells(r record) []string {
	out := make([]string, len(r.vals))
	for i, v := range r.vals {
		var s string
		switch {
		case string(v) == "null":
			s = ""
		case len(v) > 0 && v[0] == '"':
			_ = json.Unmarshal(v, &s)
		default:
			s = string(v)
		}
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			s = "'" + s
		}
		out[i] = s
	}
	return out
}

// Export writes the tenant's export archive (ExportFormat) to w, which the
// caller wraps in encryption (NewAESWriter or NewPGPWriter). It records the
// export in the tenant's audit trail (category export) first. tmpDir holds
// the scratch files (encrypted under one-time keys); os.TempDir when "".
func (s *Service) Export(ctx context.Context, tenant tenants.Tenant, w io.Writer, tmpDir string) (ExportResult, error) {
	if s.Audit == nil {
		return ExportResult{}, errors.New("privacy: export needs the audit service")
	}
	tmp, err := os.MkdirTemp(tmpDir, "relais-export-")
	if err != nil {
		return ExportResult{}, fmt.Errorf("privacy: scratch directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	now := s.now()
	err = s.DB.Tenant(tenant.ID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryExport, Action: "tenant.export", ObjectType: "tenant", ObjectID: tenant.ID,
			Details: map[string]any{"format": ExportFormat}})
		return err
	})
	if err != nil {
		return ExportResult{}, err
	}
	parts, m, err := s.exportTables(ctx, tenant.ID, tmp)
	if err != nil {
		return ExportResult{}, err
	}
	defer func() {
		for _, p := range parts {
			p.close()
		}
	}()
	au, err := newScratch(tmp, "audit/audit.jsonl", "")
	if err != nil {
		return ExportResult{}, err
	}
	parts = append(parts, au)
	sum, err := s.Audit.Export(ctx, tenant.ID, audit.ExportRequest{}, au)
	if err != nil {
		return ExportResult{}, fmt.Errorf("privacy: export the audit trail: %w", err)
	}
	if err := au.finish(); err != nil {
		return ExportResult{}, err
	}
	au.rows = sum.Events
	if m.AuditVerifierKey, err = s.Audit.PublicKey(ctx, tenant.ID); err != nil {
		return ExportResult{}, err
	}
	m.Format, m.TenantID, m.TenantSlug, m.TenantName, m.ExportedAt = ExportFormat, tenant.ID, tenant.Slug, tenant.Name, now
	m.AuditEvents, m.AuditCheckpoint = sum.Events, sum.Checkpoint
	for _, p := range parts {
		m.Files = append(m.Files, p.entry())
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ExportResult{}, err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr("manifest.json", int64(len(mb)+1))); err != nil {
		return ExportResult{}, err
	}
	if _, err := tw.Write(append(mb, '\n')); err != nil {
		return ExportResult{}, err
	}
	for _, p := range parts {
		if err := tw.WriteHeader(hdr(filepath.ToSlash(p.path), p.n)); err != nil {
			return ExportResult{}, err
		}
		if err := p.copyTo(tw); err != nil {
			return ExportResult{}, fmt.Errorf("privacy: write %s: %w", p.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return ExportResult{}, err
	}
	return ExportResult{Manifest: m, Bytes: cw.n}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
