package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/store"
)

// Reasons a checkpoint was written.
const (
	ReasonPeriodic = "periodic"
	ReasonExport   = "export"
	ReasonPurge    = "purge"
	ReasonManual   = "manual"
)

// maxNoteLen bounds a checkpoint note read from a file or the store.
const maxNoteLen = 4096

// Checkpoint is a signed statement of a log's tree size and root hash.
type Checkpoint struct {
	TenantID  string    `json:"tenant_id"`
	Origin    string    `json:"origin"`
	Size      int64     `json:"tree_size"`
	Root      tlog.Hash `json:"root_hash"`
	Note      string    `json:"note"` // the signed note, verifiable with the log's public key
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// checkpointText is the signed text: origin, size, base64 root, one line
// each (the C2SP tlog-checkpoint form).
func checkpointText(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// parseCheckpointText parses the signed text strictly.
func parseCheckpointText(text string) (origin string, size int64, root tlog.Hash, err error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return "", 0, root, errors.New("a checkpoint has exactly three lines: origin, tree size, root hash")
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || lines[1] != strconv.FormatInt(size, 10) {
		return "", 0, root, fmt.Errorf("the checkpoint's tree size %q is not a number", lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return "", 0, root, errors.New("the checkpoint's root hash is not 32 bytes of base64")
	}
	return lines[0], size, tlog.Hash(h), nil
}

// OpenCheckpoint verifies a signed checkpoint note with a note verifier key
// (as printed by `relais audit pubkey`) and returns its origin, tree size
// and root hash. The errors say whether the note is malformed, signed by
// another key, or carries a signature that does not verify (forged).
func OpenCheckpoint(signed []byte, vkey string) (origin string, size int64, root tlog.Hash, err error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return "", 0, root, fmt.Errorf("audit: the public key is not a note verifier key (name+hash+base64): %w", err)
	}
	return openCheckpoint(signed, v)
}

func openCheckpoint(signed []byte, v note.Verifier) (origin string, size int64, root tlog.Hash, err error) {
	if len(signed) > maxNoteLen {
		return "", 0, root, errors.New("the checkpoint note is too long")
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		switch {
		case errors.As(err, &inv):
			return "", 0, root, fmt.Errorf("its signature by %s does not verify: the checkpoint was forged or altered", v.Name())
		case errors.As(err, &unv):
			var by []string
			for _, s := range unv.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return "", 0, root, fmt.Errorf("it is not signed by key %s+%08x (signed by %s): wrong public key, or a forged checkpoint", v.Name(), v.KeyHash(), strings.Join(by, ", "))
		}
		return "", 0, root, fmt.Errorf("the checkpoint note is malformed: %w", err)
	}
	origin, size, root, err = parseCheckpointText(n.Text)
	if err != nil {
		return "", 0, root, err
	}
	if origin != v.Name() {
		return "", 0, root, fmt.Errorf("the checkpoint is for log %q, the key for %q", origin, v.Name())
	}
	return origin, size, root, nil
}

// latestCheckpoint returns the log's newest checkpoint (ok false if none).
func latestCheckpoint(ctx context.Context, tx *store.Tx) (Checkpoint, bool, error) {
	cps, err := listCheckpoints(ctx, tx, `ORDER BY tree_size DESC LIMIT 1`)
	if err != nil || len(cps) == 0 {
		return Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

// Checkpoints lists a log's checkpoints, smallest tree first.
func Checkpoints(ctx context.Context, tx *store.Tx) ([]Checkpoint, error) {
	return listCheckpoints(ctx, tx, `ORDER BY tree_size`)
}

func listCheckpoints(ctx context.Context, tx *store.Tx, tail string, args ...any) ([]Checkpoint, error) {
	origin, err := Origin(tx.TenantID())
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT tree_size, root_hash, note, reason, created_at FROM audit_checkpoints WHERE tenant_id = $1 `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Checkpoint
	for rows.Next() {
		c := Checkpoint{TenantID: tx.TenantID(), Origin: origin}
		var root []byte
		var at int64
		if err := rows.Scan(&c.Size, &root, &c.Note, &c.Reason, &at); err != nil {
			return nil, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		copy(c.Root[:], root)
		if len(root) != tlog.HashSize {
			c.Root = tlog.Hash{} // reported by verification
		}
		c.CreatedAt = store.FromMicros(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	return out, nil
}

// signCheckpoint signs and stores a checkpoint of the tree of size n with
// the given root, unless one of that size exists (which it returns).
func signCheckpoint(ctx context.Context, tx *store.Tx, signer note.Signer, n int64, root tlog.Hash, reason string) (Checkpoint, error) {
	if cps, err := listCheckpoints(ctx, tx, `AND tree_size = $2`, n); err != nil || len(cps) == 1 {
		if err != nil {
			return Checkpoint{}, err
		}
		return cps[0], nil
	}
	text := checkpointText(signer.Name(), n, root)
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign the checkpoint: %w", err)
	}
	now := tx.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (tenant_id, tree_size, root_hash, note, reason, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, tree_size) DO NOTHING`, n, root[:], string(signed), reason, store.Micros(now)); err != nil {
		return Checkpoint{}, fmt.Errorf("audit: store the checkpoint: %w", err)
	}
	cps, err := listCheckpoints(ctx, tx, `AND tree_size = $2`, n)
	if err != nil {
		return Checkpoint{}, err
	}
	if len(cps) != 1 {
		return Checkpoint{}, fmt.Errorf("audit: the checkpoint of size %d was not stored", n)
	}
	return cps[0], nil
}
