package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// InstanceFormat is the format of instance snapshots.
const InstanceFormat = "relais-instance-backup/v1"

// InstanceHeader is the manifest of a whole-instance snapshot: the
// snapshot's random key wrapped by the master key. The snapshot object is
// the SQLite file encrypted with the streaming AEAD under that key, this
// header (as stored) being its additional data.
type InstanceHeader struct {
	Format      string `json:"format"`
	ID          string `json:"id"`
	TakenAt     int64  `json:"taken_at"`
	MasterKeyID string `json:"master_key_id"`
	WrappedKey  []byte `json:"wrapped_key"`
}

func instanceAAD(id string) []byte { return []byte("relais-instance-backup/v1\x00" + id) }

// Instance snapshots the whole SQLite store (VACUUM INTO a temporary file
// beside it, then encrypted into the target as instance/<id>.db.enc with
// its manifest instance/<id>.manifest). The temporary plaintext copy is
// removed whatever happens.
func (s *Service) Instance(ctx context.Context, t Target, dataDir string) (InstanceHeader, error) {
	if s.DB.Dialect() != store.SQLite {
		return InstanceHeader{}, errors.New("backup: instance snapshots are for SQLite; back up PostgreSQL with pgBackRest or WAL-G (see docs/operations.md)")
	}
	tmpDir, err := os.MkdirTemp(dataDir, ".instance-backup-*")
	if err != nil {
		return InstanceHeader{}, fmt.Errorf("backup: temporary snapshot directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmpDir) }()
	snap := filepath.Join(tmpDir, "relais.db")
	if err := s.DB.VacuumInto(ctx, snap); err != nil {
		return InstanceHeader{}, err
	}
	now := s.now()
	h := InstanceHeader{Format: InstanceFormat, ID: newPointID(now), TakenAt: store.Micros(now), MasterKeyID: s.Master.ID()}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	defer clear(raw)
	if h.WrappedKey, err = s.Master.Wrap(ctx, raw, instanceAAD(h.ID)); err != nil {
		return InstanceHeader{}, fmt.Errorf("backup: wrap the snapshot key: %w", err)
	}
	k, err := deriveSetKeys(raw)
	if err != nil {
		return InstanceHeader{}, err
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return InstanceHeader{}, err
	}
	f, err := os.Open(snap) // #nosec G304 -- our own temporary file
	if err != nil {
		return InstanceHeader{}, err
	}
	defer func() { _ = f.Close() }()
	pr, pw := io.Pipe()
	go func() {
		w, err := k.stream.NewEncryptingWriter(pw, manifestAAD(hdr))
		if err == nil {
			_, err = io.Copy(w, f)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		_ = pw.CloseWithError(err)
	}()
	if err := t.Put(ctx, "instance/"+h.ID+".db.enc", pr, -1); err != nil {
		_ = pr.CloseWithError(err)
		return InstanceHeader{}, err
	}
	if err := t.Put(ctx, "instance/"+h.ID+".manifest", bytes.NewReader(append(hdr, '\n')), int64(len(hdr)+1)); err != nil {
		return InstanceHeader{}, err
	}
	err = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "backup.instance",
			ObjectType: "backup_target", ObjectID: t.ID(), Details: map[string]any{"id": h.ID}})
		return err
	})
	return h, err
}

// Instances lists the instance snapshots in the target, oldest first.
func (s *Service) Instances(ctx context.Context, t Target) ([]string, error) {
	names, err := t.List(ctx, "instance/")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		if strings.HasSuffix(n, ".manifest") {
			ids = append(ids, strings.TrimSuffix(strings.TrimPrefix(n, "instance/"), ".manifest"))
		}
	}
	return ids, nil
}

// OpenInstance decrypts and authenticates an instance snapshot into w (an
// SQLite database file). Written data is only trustworthy once it returns
// nil: write to a temporary file and rename it.
func (s *Service) OpenInstance(ctx context.Context, t Target, id string, w io.Writer) error {
	r, err := t.Get(ctx, "instance/"+id+".manifest")
	if err != nil {
		return err
	}
	hdrLine, err := io.ReadAll(io.LimitReader(r, 1<<20))
	_ = r.Close()
	if err != nil {
		return err
	}
	hdr, ok := bytes.CutSuffix(hdrLine, []byte("\n"))
	var h InstanceHeader
	if !ok || json.Unmarshal(hdr, &h) != nil || h.Format != InstanceFormat || h.ID != id {
		return fmt.Errorf("%w: instance/%s.manifest", ErrAuth, id)
	}
	raw, err := s.Master.Unwrap(ctx, h.WrappedKey, instanceAAD(h.ID))
	if err != nil {
		return fmt.Errorf("backup: unwrap the key of snapshot %s (is this the master key %s?): %w", id, h.MasterKeyID, err)
	}
	k, err := deriveSetKeys(raw)
	clear(raw)
	if err != nil {
		return err
	}
	body, err := t.Get(ctx, "instance/"+id+".db.enc")
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	dr, err := k.stream.NewDecryptingReader(body, manifestAAD(hdr))
	if err != nil {
		return fmt.Errorf("%w: instance/%s.db.enc", ErrAuth, id)
	}
	if _, err := io.Copy(w, dr); err != nil {
		return fmt.Errorf("%w: instance/%s.db.enc", ErrAuth, id)
	}
	return nil
}
