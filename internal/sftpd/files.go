package sftpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// The two directories of a tenant's tree.
const (
	DirInbox  = "inbox"
	DirOutbox = "outbox"
)

// File states (sftp_files.state).
const (
	stateUploaded   = "uploaded"
	statePending    = "pending"
	stateProcessing = "processing"
	stateReady      = "ready"
)

// Errors of file operations.
var (
	ErrFileNotFound   = errors.New("no such file")
	ErrBadName        = errors.New("file names are 1 to 255 printable characters, without / and not starting with a dot")
	ErrBusy           = errors.New("the file is being processed")
	ErrTooLarge       = errors.New("the file exceeds the account's maximum file size")
	ErrQuota          = errors.New("the account's quota is exhausted")
	ErrTooManyUploads = errors.New("too many uploads open at once; close one first")
)

// FileInfo describes a file of a tenant's tree.
type FileInfo struct {
	ID        string    `json:"id"`
	Dir       string    `json:"dir"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	State     string    `json:"state"`
	AccountID string    `json:"account_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	blob      string
}

// CheckName checks a file name of /inbox or /outbox.
func CheckName(name string) error {
	if name == "" || len(name) > 255 || !utf8.ValidString(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) {
		return ErrBadName
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return ErrBadName
		}
	}
	return nil
}

const fileCols = `id, dir, name, size, state, account_id, created_at, expires_at, blob`

func scanFile(sc interface{ Scan(...any) error }) (FileInfo, error) {
	var f FileInfo
	var created, expires int64
	err := sc.Scan(&f.ID, &f.Dir, &f.Name, &f.Size, &f.State, &f.AccountID, &created, &expires, &f.blob)
	f.CreatedAt, f.ExpiresAt = store.FromMicros(created), store.FromMicros(expires)
	return f, err
}

// Files lists a directory of the tenant's tree, by name.
func (s *Service) Files(ctx context.Context, tenantID, dir string) ([]FileInfo, error) {
	out := []FileInfo{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+fileCols+` FROM sftp_files WHERE tenant_id = $1 AND dir = $2 AND state <> 'writing' ORDER BY name`, dir)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			f, err := scanFile(rows)
			if err != nil {
				return err
			}
			out = append(out, f)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sftpd: list files: %w", err)
	}
	return out, nil
}

// File returns one file.
func (s *Service) File(ctx context.Context, tenantID, dir, name string) (FileInfo, error) {
	var f FileInfo
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		f, err = scanFile(tx.QueryRow(ctx, `SELECT `+fileCols+` FROM sftp_files WHERE tenant_id = $1 AND dir = $2 AND name = $3`, dir, name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return FileInfo{}, ErrFileNotFound
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("sftpd: read a file: %w", err)
	}
	return f, nil
}

// encWriter writes an encrypted blob and hashes the plaintext.
type encWriter struct {
	bw   BlobWriter
	sw   *sealWriter
	sum  hashWriter
	size int64
	key  string
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func (s *Service) newEncWriter(ctx context.Context, tenantID, fileID string) (*encWriter, error) {
	cr, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("sftpd: tenant key: %w", err)
	}
	key := tenantID + "/" + fileID
	bw, err := s.Blobs.Create(ctx, key)
	if err != nil {
		return nil, err
	}
	sw, err := newSealWriter(bw, cr, key)
	if err != nil {
		_ = bw.Abort()
		return nil, err
	}
	return &encWriter{bw: bw, sw: sw, sum: sha256.New(), key: key}, nil
}

func (w *encWriter) Write(p []byte) (int, error) {
	n, err := w.sw.Write(p)
	_, _ = w.sum.Write(p[:n]) // a hash never fails
	w.size += int64(n)
	return n, err
}

func (w *encWriter) commit() error {
	if err := w.sw.Close(); err != nil {
		_ = w.bw.Abort()
		return err
	}
	return w.bw.Commit()
}

// Deliver puts a file in the tenant's /outbox (import reports, exports,
// restitution files), replacing a file of the same name, in one
// transaction with its audit event. The content is encrypted with the
// tenant key and removed after the retention period.
func (s *Service) Deliver(ctx context.Context, tenantID, name string, r io.Reader) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, err
	}
	id := newID()
	w, err := s.newEncWriter(ctx, tenantID, id)
	if err != nil {
		return FileInfo{}, err
	}
	if _, err := io.Copy(w, r); err != nil {
		_ = w.bw.Abort()
		return FileInfo{}, fmt.Errorf("sftpd: write a delivered file: %w", err)
	}
	if err := w.commit(); err != nil {
		return FileInfo{}, err
	}
	now := s.now()
	f := FileInfo{ID: id, Dir: DirOutbox, Name: name, Size: w.size, State: stateReady, CreatedAt: now, ExpiresAt: now.Add(s.retention()), blob: w.key}
	var old []string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		if old, err = replaceFile(ctx, tx, DirOutbox, name); err != nil {
			return err
		}
		if err := insertFile(ctx, tx, f); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryExport, Action: "sftp.file.deliver", ObjectType: "sftp_file", ObjectID: id,
			Details: map[string]any{"dir": DirOutbox, "name": name, "size": w.size, "sha256": hex.EncodeToString(w.sum.Sum(nil))}})
		return err
	})
	if err != nil {
		_ = s.Blobs.Remove(context.WithoutCancel(ctx), w.key)
		return FileInfo{}, err
	}
	s.removeBlobs(ctx, old)
	return f, nil
}

func insertFile(ctx context.Context, tx *store.Tx, f FileInfo) error {
	_, err := tx.Exec(ctx, `INSERT INTO sftp_files (tenant_id, id, dir, name, account_id, size, blob, state, created_at, updated_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)`, f.ID, f.Dir, f.Name, f.AccountID, f.Size, f.blob, f.State,
		store.Micros(f.CreatedAt), store.Micros(f.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sftpd: record a file: %w", err)
	}
	return nil
}

// replaceFile deletes the row of dir/name so that a new file takes its
// place; it refuses when that file is being imported. It returns the blob
// keys to remove after commit.
func replaceFile(ctx context.Context, tx *store.Tx, dir, name string) ([]string, error) {
	var blob, state string
	err := tx.QueryRow(ctx, `SELECT blob, state FROM sftp_files WHERE tenant_id = $1 AND dir = $2 AND name = $3`, dir, name).Scan(&blob, &state)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sftpd: read a file: %w", err)
	}
	if state == statePending || state == stateProcessing {
		return nil, ErrBusy
	}
	if _, err := tx.Exec(ctx, `DELETE FROM sftp_files WHERE tenant_id = $1 AND dir = $2 AND name = $3`, dir, name); err != nil {
		return nil, fmt.Errorf("sftpd: replace a file: %w", err)
	}
	return []string{blob}, nil
}

func (s *Service) removeBlobs(ctx context.Context, keys []string) {
	for _, k := range keys {
		if err := s.Blobs.Remove(context.WithoutCancel(ctx), k); err != nil {
			s.Logger.Warn("sftp: could not remove a stored file (retention will retry)", "blob", k, "error", err)
		}
	}
}

// openFile opens a stored file for reading (decrypted).
func (s *Service) openFile(ctx context.Context, tenantID string, f FileInfo) (*openedFile, error) {
	cr, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("sftpd: tenant key: %w", err)
	}
	b, err := s.Blobs.Open(ctx, f.blob)
	if err != nil {
		return nil, err
	}
	or, err := newOpenReader(b, b.Size(), cr, f.blob)
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return &openedFile{openReader: or, blob: b}, nil
}

type openedFile struct {
	*openReader
	blob Blob
}

func (o *openedFile) Close() error { return o.blob.Close() }

// deleteFile removes a file (row, then blob) with its audit event.
func (s *Service) deleteFile(ctx context.Context, tenantID string, f FileInfo, action string, details map[string]any) error {
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM sftp_files WHERE tenant_id = $1 AND id = $2`, f.ID)
		if err != nil {
			return fmt.Errorf("sftpd: remove a file: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrFileNotFound
		}
		if details == nil {
			details = map[string]any{}
		}
		details["dir"], details["name"], details["size"] = f.Dir, f.Name, f.Size
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: action, ObjectType: "sftp_file", ObjectID: f.ID, Details: details})
		return err
	})
	if err != nil {
		return err
	}
	s.removeBlobs(ctx, []string{f.blob})
	return nil
}

// usedBytes is what an account's inbox files take.
func (s *Service) usedBytes(ctx context.Context, tenantID, accountID string) (int64, error) {
	var n int64
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM sftp_files WHERE tenant_id = $1 AND account_id = $2 AND dir = 'inbox'`, accountID).Scan(&n)
	})
	return n, err
}

// upload is a file being written to /inbox through SFTP. SFTP clients
// pipeline writes, so they may arrive out of order: writes ahead of the
// stream are held (up to maxAhead bytes) until the gap is filled; a write
// behind the stream (a rewrite) is refused. The file is committed at
// Close unless the transfer failed.
type upload struct {
	s      *Service
	sess   *session
	name   string
	id     string
	w      *encWriter
	limit  int64 // max file size, and what the quota leaves
	mu     sync.Mutex
	off    int64
	ahead  map[int64][]byte
	held   int64
	failed error
	closed bool
	// release frees the upload's place among the account's open uploads.
	release func()
}

const maxAhead = 16 << 20

var errOrder = errors.New("writes must be sequential (rewriting is not supported)")

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed != nil {
		return 0, u.failed
	}
	if off+int64(len(p)) > u.limit {
		u.failed = ErrTooLarge
		if u.limit < u.sess.acct.MaxFileBytes {
			u.failed = ErrQuota
		}
		return 0, u.failed
	}
	switch {
	case off == u.off:
		if err := u.write(p); err != nil {
			return 0, err
		}
		for {
			b, ok := u.ahead[u.off]
			if !ok {
				break
			}
			delete(u.ahead, u.off)
			u.held -= int64(len(b))
			if err := u.write(b); err != nil {
				return 0, err
			}
		}
	case off > u.off:
		if u.held+int64(len(p)) > maxAhead {
			u.failed = errOrder
			return 0, u.failed
		}
		u.ahead[off] = append([]byte(nil), p...)
		u.held += int64(len(p))
	default:
		u.failed = errOrder
		return 0, u.failed
	}
	return len(p), nil
}

func (u *upload) write(p []byte) error {
	if _, err := u.w.Write(p); err != nil {
		u.failed = fmt.Errorf("sftpd: store the upload: %w", err)
		return u.failed
	}
	u.off += int64(len(p))
	return nil
}

// TransferError is called by the SFTP server when the connection broke
// with the file open: the upload is discarded, never imported half-way.
func (u *upload) TransferError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed == nil {
		u.failed = fmt.Errorf("transfer interrupted: %w", err)
	}
}

// Close commits the upload (or discards a failed one) and records it.
func (u *upload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	u.closed = true
	if u.release != nil {
		defer u.release()
	}
	ctx := u.sess.ctx
	if u.failed == nil && len(u.ahead) > 0 {
		u.failed = errOrder
	}
	if u.failed != nil {
		_ = u.w.bw.Abort()
		u.sess.record(ctx, "sftp.file.upload", "failure", map[string]any{"path": "/inbox/" + u.name, "reason": u.failed.Error(), "bytes": u.off})
		return u.failed
	}
	if err := u.w.commit(); err != nil {
		u.sess.record(ctx, "sftp.file.upload", "failure", map[string]any{"path": "/inbox/" + u.name, "reason": "storage error", "bytes": u.off})
		return err
	}
	return u.s.completeUpload(ctx, u.sess, u.name, u.id, u.w)
}

// temporary names are uploads in progress by clients that upload under a
// temporary name and rename at the end.
func temporary(name string) bool {
	for _, suf := range []string{".part", ".tmp", ".filepart", ".partial"} {
		if strings.HasSuffix(strings.ToLower(name), suf) {
			return true
		}
	}
	return false
}

// completeUpload records a committed upload: pending (to import) when
// complete, uploaded when it waits for a rename or a .done marker.
func (s *Service) completeUpload(ctx context.Context, sess *session, name, id string, w *encWriter) error {
	now := s.now()
	state := statePending
	if temporary(name) || sess.acct.DoneMarker {
		state = stateUploaded
	}
	f := FileInfo{ID: id, Dir: DirInbox, Name: name, Size: w.size, State: state, AccountID: sess.acct.ID, CreatedAt: now,
		ExpiresAt: now.Add(s.retention()), blob: w.key}
	var old []string
	err := s.DB.Tenant(sess.tenantID).Tx(ctx, func(tx *store.Tx) error {
		// Lock the account's row: concurrent commits of the same account
		// (several open uploads, several nodes) check the quota in turn.
		res, err := tx.Exec(ctx, `UPDATE sftp_accounts SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2`, sess.acct.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if old, err = replaceFile(ctx, tx, DirInbox, name); err != nil {
			return err
		}
		// Each upload saw the free space when it was opened: check the
		// quota again with what the others committed meanwhile.
		var used int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM sftp_files WHERE tenant_id = $1 AND account_id = $2 AND dir = 'inbox'`,
			sess.acct.ID).Scan(&used); err != nil {
			return err
		}
		if used+w.size > sess.acct.QuotaBytes {
			return ErrQuota
		}
		if err := insertFile(ctx, tx, f); err != nil {
			return err
		}
		return sess.recordTx(ctx, tx, "sftp.file.upload", "success", map[string]any{"path": "/inbox/" + name, "size": w.size,
			"sha256": hex.EncodeToString(w.sum.Sum(nil)), "state": state, "file_id": id})
	})
	if err != nil {
		_ = s.Blobs.Remove(context.WithoutCancel(ctx), w.key)
		sess.record(ctx, "sftp.file.upload", "failure", map[string]any{"path": "/inbox/" + name, "reason": err.Error()})
		return err
	}
	s.removeBlobs(ctx, old)
	if state == statePending {
		s.Wake()
	}
	return nil
}

// markPending moves an uploaded (waiting) file to pending.
func (s *Service) markPending(ctx context.Context, tx *store.Tx, name string) (bool, error) {
	res, err := tx.Exec(ctx, `UPDATE sftp_files SET state = 'pending', updated_at = $4 WHERE tenant_id = $1 AND dir = $2 AND name = $3
		AND state = 'uploaded'`, DirInbox, name, store.Micros(s.now()))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// fileInfo adapts FileInfo (and the two directories) to os.FileInfo.
type fileInfo struct {
	name  string
	size  int64
	mode  os.FileMode
	mtime time.Time
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() os.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return f.mtime }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }
