package sftpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
)

// importLease is how long a node holds an inbox file it imports; it is
// renewed after each committed batch, so a node that dies leaves the file to
// another after this long (the contact import resumes where it stopped).
const importLease = 5 * time.Minute

// Run does the background work until ctx ends: it imports the files
// completed in /inbox (woken by uploads, and every 30 s for files left by
// a stopped node) and removes expired files (every 10 minutes). Every node
// may run it: files are claimed with a lease.
func (s *Service) Run(ctx context.Context) error {
	s.init()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	var lastExpire time.Time
	for {
		for {
			n, err := s.ProcessPending(ctx)
			if err != nil && ctx.Err() == nil {
				s.Logger.Error("sftp: processing uploads failed", "error", err)
			}
			if n == 0 || err != nil {
				break
			}
		}
		if now := s.now(); now.Sub(lastExpire) >= 10*time.Minute {
			if _, err := s.Expire(ctx); err != nil && ctx.Err() == nil {
				s.Logger.Error("sftp: retention failed", "error", err)
			}
			lastExpire = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-tick.C:
		}
	}
}

type fileRef struct{ tenantID, id string }

// ProcessPending claims and imports the completed inbox files (up to 10)
// and returns how many it processed.
func (s *Service) ProcessPending(ctx context.Context) (int, error) {
	s.init()
	now := s.now()
	var refs []fileRef
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, id FROM sftp_files WHERE state = 'pending' OR (state = 'processing' AND lease_until < $1)
			ORDER BY created_at LIMIT 10`, store.Micros(now))
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r fileRef
			if err := rows.Scan(&r.tenantID, &r.id); err != nil {
				return err
			}
			refs = append(refs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("sftpd: find completed uploads: %w", err)
	}
	n := 0
	for _, r := range refs {
		f, ok, err := s.claim(ctx, r)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		if err := s.process(ctx, r.tenantID, f); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Service) claim(ctx context.Context, r fileRef) (FileInfo, bool, error) {
	now := s.now()
	var f FileInfo
	err := s.DB.Tenant(r.tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		f, err = scanFile(tx.QueryRow(ctx, `UPDATE sftp_files SET state = 'processing', lease_owner = $3, lease_until = $4, updated_at = $5
			WHERE tenant_id = $1 AND id = $2 AND (state = 'pending' OR (state = 'processing' AND lease_until < $5)) RETURNING `+fileCols,
			r.id, s.Node, store.Micros(now.Add(importLease)), store.Micros(now)))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return FileInfo{}, false, nil
	}
	if err != nil {
		return FileInfo{}, false, fmt.Errorf("sftpd: claim an upload: %w", err)
	}
	return f, true, nil
}

// Report is the import report delivered to /outbox as
// "<file name>.report.json".
type Report struct {
	File     string                 `json:"file"`
	Status   string                 `json:"status"` // completed, failed, rejected
	Error    string                 `json:"error,omitempty"`
	Job      *contacts.ImportJob    `json:"job,omitempty"`
	Errors   []contacts.ImportError `json:"errors,omitempty"`
	Finished time.Time              `json:"finished_at"`
}

// process imports one claimed file, delivers its report, and removes it.
func (s *Service) process(ctx context.Context, tenantID string, f FileInfo) error {
	var settings ImportSettings
	gone := false
	if f.AccountID != "" {
		a, err := s.Account(ctx, tenantID, f.AccountID)
		switch {
		case errors.Is(err, ErrNotFound):
			// Never with the default settings: they may do the opposite
			// of the account's (an upsert of a blocklist file).
			gone = true
		case err != nil:
			return fmt.Errorf("sftpd: read the uploading account: %w", err) // the lease lapses; retried
		default:
			settings = a.Import
		}
	}
	rep := Report{File: f.Name}
	var of *openedFile
	var err error
	if !gone {
		of, err = s.openFile(ctx, tenantID, f)
	}
	switch {
	case gone:
		rep.Status, rep.Error = "rejected", "the SFTP account that uploaded the file was removed"
	case err != nil:
		rep.Status, rep.Error = "rejected", "the stored file could not be read"
	default:
		opts := importOptions(settings, f.Name)
		lastRenew := s.now()
		opts.Progress = func(contacts.ImportProgress) {
			if now := s.now(); now.Sub(lastRenew) > importLease/5 {
				lastRenew = now
				_ = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
					_, err := tx.Exec(ctx, `UPDATE sftp_files SET lease_until = $3 WHERE tenant_id = $1 AND id = $2 AND lease_owner = $4`,
						f.ID, store.Micros(now.Add(importLease)), s.Node)
					return err
				})
			}
		}
		job, ierr := s.Contacts.Import(ctx, tenantID, io.NewSectionReader(of, 0, of.Size()), opts)
		_ = of.Close()
		if ctx.Err() != nil {
			return ctx.Err() // stopping: the lease lapses and a node resumes it
		}
		switch {
		case ierr == nil:
			rep.Status, rep.Job = job.Status, &job
			if job.Failed > 0 {
				if errs, err := s.Contacts.ImportErrors(ctx, tenantID, job.ID, 0, 1000); err == nil {
					rep.Errors = errs
				}
			}
		case job.ID != "":
			rep.Status, rep.Job, rep.Error = "failed", &job, job.Error
		default:
			rep.Status, rep.Error = "rejected", ierr.Error()
		}
	}
	rep.Finished = s.now().UTC()
	body, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	reportName := f.Name + ".report.json"
	if len(reportName) > 255 {
		reportName = f.ID + ".report.json"
	}
	if _, err := s.Deliver(ctx, tenantID, reportName, bytes.NewReader(append(body, '\n'))); err != nil {
		return fmt.Errorf("sftpd: deliver the import report: %w", err)
	}
	details := map[string]any{"status": rep.Status, "report": "/outbox/" + reportName}
	if rep.Job != nil {
		details["import_job"] = rep.Job.ID
	}
	return s.deleteFile(ctx, tenantID, f, "sftp.file.import", details)
}

// Expire removes the files whose retention ended (XFER-3) and returns how
// many.
func (s *Service) Expire(ctx context.Context) (int, error) {
	now := s.now()
	var refs []fileRef
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, id FROM sftp_files WHERE expires_at <= $1 AND state NOT IN ('pending', 'processing')
			ORDER BY expires_at LIMIT 1000`, store.Micros(now))
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r fileRef
			if err := rows.Scan(&r.tenantID, &r.id); err != nil {
				return err
			}
			refs = append(refs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("sftpd: find expired files: %w", err)
	}
	n := 0
	for _, r := range refs {
		var f FileInfo
		err := s.DB.Tenant(r.tenantID).Tx(ctx, func(tx *store.Tx) error {
			var err error
			f, err = scanFile(tx.QueryRow(ctx, `SELECT `+fileCols+` FROM sftp_files WHERE tenant_id = $1 AND id = $2`, r.id))
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		ctx := audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorSystem, ID: "sftp-retention"}})
		if err := s.deleteFile(ctx, r.tenantID, f, "sftp.file.expire", map[string]any{"expired_at": store.Micros(f.ExpiresAt)}); err != nil &&
			!errors.Is(err, ErrFileNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
