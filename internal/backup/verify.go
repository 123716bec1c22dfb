package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Points  int      `json:"points"`
	Objects int      `json:"objects"`
	Bytes   int64    `json:"bytes"`
	Failed  []Failed `json:"failed,omitempty"`
	// Unreferenced objects (a backup interrupted before its manifest) are
	// not failures; retention removes them.
	Unreferenced []string `json:"unreferenced,omitempty"`
}

// Failed names an object that did not authenticate, and why.
type Failed struct {
	Object string `json:"object"`
	Reason string `json:"reason"`
}

// OK reports whether every object authenticated.
func (r VerifyReport) OK() bool { return len(r.Failed) == 0 }

// VerifyError is returned by Verify when an object fails.
type VerifyError struct{ Failed []Failed }

func (e *VerifyError) Error() string {
	var names []string
	for _, f := range e.Failed {
		names = append(names, f.Object+" ("+f.Reason+")")
	}
	return fmt.Sprintf("backup verification failed for %d object(s): %s", len(e.Failed), strings.Join(names, ", "))
}

// Verify reads back every object of every point of the tenant in the
// target and authenticates it: each manifest (AEAD over its header and
// body), each chunk (every AEAD segment, and its HMAC name), each OpenPGP
// copy (its SHA-256 in the authenticated body). A failure is returned as a
// *VerifyError naming the objects, and raises an alert: the metric, an
// audit event in the tenant's log, and Notify.
func (s *Service) Verify(ctx context.Context, tenantID string, t Target) (VerifyReport, error) {
	rep, err := s.verify(ctx, tenantID, t)
	if err != nil && len(rep.Failed) == 0 {
		return rep, err
	}
	ok := rep.OK()
	s.Metrics.verified(tenantID, ok)
	details := map[string]any{"target": t.ID(), "points": rep.Points, "objects": rep.Objects, "ok": ok}
	if !ok {
		var objs []string
		for _, f := range rep.Failed {
			objs = append(objs, f.Object)
		}
		details["failed"] = objs
	}
	action := "backup.verify"
	if !ok {
		action = "backup.verify.fail"
	}
	aerr := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE backup_state SET last_verify_at = $2, last_verify_ok = $3 WHERE tenant_id = $1 AND target = $4`,
			store.Micros(s.now()), ok, t.ID()); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: action, ObjectType: "backup_target",
			ObjectID: t.ID(), Details: details})
		return err
	})
	if aerr != nil {
		s.log().Error("backup: record the verification", "tenant", tenantID, "err", aerr)
	}
	if !ok {
		s.log().Error("backup verification failed", "tenant", tenantID, "target", t.ID(), "objects", len(rep.Failed))
		if s.Notify != nil {
			for _, f := range rep.Failed {
				s.Notify(ctx, Alert{TenantID: tenantID, Kind: "verify", Object: f.Object, Message: f.Reason})
			}
		}
		return rep, &VerifyError{Failed: rep.Failed}
	}
	return rep, nil
}

func (s *Service) verify(ctx context.Context, tenantID string, t Target) (VerifyReport, error) {
	var rep VerifyReport
	names, err := t.List(ctx, tenantPrefix(tenantID))
	if err != nil {
		return rep, err
	}
	referenced := map[string]bool{}
	fail := func(obj, reason string) { rep.Failed = append(rep.Failed, Failed{Object: obj, Reason: reason}) }
	for _, n := range names {
		if !strings.HasSuffix(n, ".manifest") {
			continue
		}
		rep.Points++
		rep.Objects++
		referenced[n] = true
		h, body, k, err := s.openManifest(ctx, t, n)
		if err != nil {
			fail(n, reason(err))
			continue
		}
		if h.TenantID != tenantID {
			fail(n, "manifest of another tenant")
			continue
		}
		for _, e := range body.Tables {
			for _, c := range append(append([]ChunkRef(nil), e.Chunks...), e.Deletes...) {
				name := chunkName(tenantID, refSet(h, c), c.ID)
				if referenced[name] {
					continue
				}
				referenced[name] = true
				rep.Objects++
				n, err := s.checkChunk(ctx, t, k, tenantID, c)
				rep.Bytes += n
				if err != nil {
					fail(name, reason(err))
				}
			}
		}
		if body.PGP != nil {
			referenced[body.PGP.Name] = true
			rep.Objects++
			if err := checkSHA(ctx, t, *body.PGP); err != nil {
				fail(body.PGP.Name, reason(err))
			}
		}
	}
	for _, n := range names {
		if !referenced[n] {
			rep.Unreferenced = append(rep.Unreferenced, n)
		}
	}
	return rep, nil
}

func reason(err error) string {
	switch {
	case errors.Is(err, ErrNotExist):
		return "missing"
	case errors.Is(err, ErrAuth):
		return "failed authentication (altered, truncated or wrong key)"
	default:
		return err.Error()
	}
}

// refSet is the set that stores chunk c of a point.
func refSet(h Header, c ChunkRef) string {
	if c.Set != "" {
		return c.Set
	}
	return h.SetID
}

// readChunk downloads, authenticates and decrypts a chunk, and checks its
// content-address.
func (s *Service) readChunk(ctx context.Context, t Target, k *pointKeys, tenantID string, c ChunkRef) ([]byte, error) {
	return s.readChunkInto(ctx, t, k, tenantID, c, nil)
}

// readChunkInto is readChunk decrypting into buf (see setKeys.openInto):
// the caller owns the result, which may share buf's memory.
func (s *Service) readChunkInto(ctx context.Context, t Target, k *pointKeys, tenantID string, c ChunkRef, buf []byte) ([]byte, error) {
	sk, set, err := k.of(c)
	if err != nil {
		return nil, err
	}
	r, err := t.Get(ctx, chunkName(tenantID, set, c.ID))
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	if buf != nil && int64(cap(buf)) <= c.Size && c.Size < 1<<30 {
		buf = make([]byte, 0, c.Size+1) // +1: the reader's EOF read needs room
	}
	plain, err := sk.openInto(r, chunkAAD(set, c.ID), buf)
	if err != nil {
		return nil, err
	}
	if k.chunkID(plain) != c.ID || int64(len(plain)) != c.Size {
		return nil, ErrAuth
	}
	return plain, nil
}

func (s *Service) checkChunk(ctx context.Context, t Target, k *pointKeys, tenantID string, c ChunkRef) (int64, error) {
	plain, err := s.readChunk(ctx, t, k, tenantID, c)
	return int64(len(plain)), err
}

func checkSHA(ctx context.Context, t Target, o ObjectRef) error {
	r, err := t.Get(ctx, o.Name)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	if n != o.Size || !bytes.Equal([]byte(hex.EncodeToString(h.Sum(nil))), []byte(o.SHA256)) {
		return ErrAuth
	}
	return nil
}
