// Package sftpd is Relais's SFTP file exchange (XFER-1..3): an SSH server
// that accepts public keys only, from each account's allowed networks
// only, and shows each account its tenant's virtual tree of two
// directories: /inbox, where uploaded contact files are imported, and
// /outbox, where import reports, exports and restitution files are
// delivered.
//
// Most uses need four things: [Service.AddAccount] (and [Service.Accounts],
// [Service.RemoveAccount]) to manage accounts; [Service.Serve] to accept
// connections on a listener with the host keys of [LoadOrCreateHostKeys];
// [Service.Run] for the background work (imports of uploaded files,
// retention); and [Service.Deliver] for other features that hand a file to
// a tenant (the tenant export delivers to /outbox).
//
// Files are encrypted at rest with a per-file key sealed by the tenant key
// (see seal.go for the format) and kept in a [Blobs] storage (a directory by
// default); their names and states live in the store, so several nodes
// sharing the database and the blob directory serve the same tree.
package sftpd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Service is the SFTP file exchange. Set the fields before use; it is safe
// for concurrent use afterwards.
type Service struct {
	DB       *store.DB
	Keyring  *tenants.Keyring
	Tenants  *tenants.Service
	Contacts *contacts.Service
	Blobs    Blobs
	// Config holds retention and the default quotas.
	Config config.SFTP
	Logger *slog.Logger
	Now    func() time.Time
	// Node names this process in leases (a random id when empty).
	Node string
	// HandshakeTimeout bounds the SSH handshake and authentication (30 s
	// when zero); IdleTimeout closes a connection idle that long (10 min
	// when zero).
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration

	once  sync.Once
	wake  chan struct{}
	conns connLimits
	allow struct {
		sync.Mutex
		at       time.Time
		prefixes []netip.Prefix
	}
	uploads struct {
		sync.Mutex
		open map[string]int // account id -> open uploads on this node
	}
}

// MaxOpenUploads bounds the uploads an account has open at once on a node
// (over all its connections): each may hold out-of-order writes in memory
// and a temporary file until it is closed.
const MaxOpenUploads = 8

// enterUpload counts an upload of account, or reports that it has too many
// open.
func (s *Service) enterUpload(account string) bool {
	s.uploads.Lock()
	defer s.uploads.Unlock()
	if s.uploads.open == nil {
		s.uploads.open = map[string]int{}
	}
	if s.uploads.open[account] >= MaxOpenUploads {
		return false
	}
	s.uploads.open[account]++
	return true
}

// leaveUpload uncounts an upload of account.
func (s *Service) leaveUpload(account string) {
	s.uploads.Lock()
	defer s.uploads.Unlock()
	if s.uploads.open[account]--; s.uploads.open[account] <= 0 {
		delete(s.uploads.open, account)
	}
}

func (s *Service) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		if s.Node == "" {
			s.Node = uuid.NewString()
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) retention() time.Duration {
	if s.Config.Retention.D() > 0 {
		return s.Config.Retention.D()
	}
	return 30 * 24 * time.Hour
}

// Wake asks the background worker to look for work now.
func (s *Service) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		panic(fmt.Sprintf("sftpd: new id: %v", err)) // only if the system's random source fails
	}
	return id.String()
}

// forgetAllow drops the cached union of allowed networks.
func (s *Service) forgetAllow() {
	s.allow.Lock()
	s.allow.at = time.Time{}
	s.allow.Unlock()
}

// anyAllows reports whether some account of some tenant allows addr: a
// connection from elsewhere is closed before the SSH handshake. The union
// is cached for 5 seconds (and dropped when this node changes an account).
func (s *Service) anyAllows(ctx context.Context, addr netip.Addr) (bool, error) {
	s.allow.Lock()
	defer s.allow.Unlock()
	if now := s.now(); s.allow.at.IsZero() || now.Sub(s.allow.at) > 5*time.Second || now.Before(s.allow.at) {
		var ps []netip.Prefix
		err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
			rows, err := p.Query(ctx, `SELECT DISTINCT allow FROM sftp_accounts`)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var a Account
				var raw string
				if err := rows.Scan(&raw); err != nil {
					return err
				}
				if err := json.Unmarshal([]byte(raw), &a.Allow); err != nil {
					continue
				}
				p, _, err := parseAllow(a.Allow)
				if err == nil {
					ps = append(ps, p...)
				}
			}
			return rows.Err()
		})
		if err != nil {
			return false, fmt.Errorf("sftpd: read allowed networks: %w", err)
		}
		s.allow.prefixes, s.allow.at = ps, now
	}
	addr = addr.Unmap()
	for _, p := range s.allow.prefixes {
		if p.Contains(addr) {
			return true, nil
		}
	}
	return false, nil
}
