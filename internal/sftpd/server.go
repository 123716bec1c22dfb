package sftpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ActorSFTP is the audit actor type of an SFTP account.
const ActorSFTP = "sftp_account"

// KeyExchanges are the key exchanges offered: the ML-KEM-768 + X25519
// hybrid (post-quantum) first, then X25519. No SHA-1, no finite-field or
// NIST-curve Diffie-Hellman.
func KeyExchanges() []string {
	return []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519}
}

// Ciphers are the AEAD ciphers offered (no CBC, no CTR+MAC).
func Ciphers() []string {
	return []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM, ssh.CipherAES128GCM}
}

// MACs are the MACs offered (unused with the AEAD ciphers; no SHA-1).
func MACs() []string { return []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM} }

// PublicKeyAlgorithms are the client signature algorithms accepted (no
// ssh-rsa, which signs with SHA-1).
func PublicKeyAlgorithms() []string {
	return []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
}

// connState follows one connection through authentication.
type connState struct {
	ip       netip.Addr
	port     uint16
	mu       sync.Mutex
	attempts []attempt
	user     string // the user name of a "none" request
}

type attempt struct {
	method, user, tenantID, accountID, fingerprint, reason string
}

func (cs *connState) add(a attempt) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.attempts) < 20 {
		cs.attempts = append(cs.attempts, a)
	}
}

// Serve accepts SFTP connections on l until ctx ends, then closes the
// listener and every connection.
func (s *Service) Serve(ctx context.Context, l net.Listener, hostKeys []ssh.Signer) error {
	s.init()
	if len(hostKeys) == 0 {
		return errors.New("sftpd: no host key")
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		_ = l.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("sftpd: accept: %w", err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
			s.handle(ctx, c, hostKeys)
		}()
	}
}

// idleConn has an absolute deadline during the handshake (a client that
// trickles bytes cannot hold it open), then an idle timeout extended at
// every read and write.
type idleConn struct {
	net.Conn
	mu      sync.Mutex
	timeout time.Duration // 0: the deadline is absolute
}

func (c *idleConn) absolute(d time.Duration) {
	c.mu.Lock()
	c.timeout = 0
	c.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(d))
}

func (c *idleConn) idle(d time.Duration) {
	c.mu.Lock()
	c.timeout = d
	c.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(d))
}

func (c *idleConn) extend() {
	c.mu.Lock()
	d := c.timeout
	c.mu.Unlock()
	if d > 0 {
		_ = c.SetDeadline(time.Now().Add(d))
	}
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.extend()
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.extend()
	return c.Conn.Write(p)
}

func (s *Service) handle(ctx context.Context, c net.Conn, hostKeys []ssh.Signer) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	cs := &connState{ip: ap.Addr().Unmap(), port: ap.Port()}
	if !s.conns.enter(cs.ip) {
		s.refused(ctx, cs, "too_many_connections")
		return
	}
	defer s.conns.leave(cs.ip)
	ok, err := s.anyAllows(ctx, cs.ip)
	if err != nil {
		s.Logger.Error("sftp: cannot check the allowed networks", "error", err)
		return
	}
	if !ok {
		// XFER-2: refused before any SSH exchange, before authentication.
		s.refused(ctx, cs, "address_not_allowed")
		return
	}
	// An address that failed too often with unknown user names (the
	// operator's counter) is refused before the handshake too.
	if over, err := s.overFailureLimit(ctx, "", cs.ip); err != nil || over {
		s.refused(ctx, cs, "too_many_failures")
		return
	}
	s.recordPlatform(ctx, cs, "sftp.connect", "accepted", nil)
	ic := &idleConn{Conn: c}
	ic.absolute(durOr(s.HandshakeTimeout, 30*time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(ic, s.serverConfig(ctx, cs, hostKeys))
	if err != nil {
		s.authFailed(ctx, cs, err)
		return
	}
	defer func() { _ = sc.Close() }()
	ic.idle(durOr(s.IdleTimeout, 10*time.Minute))
	sess, err := s.newSession(ctx, cs, sc)
	if err != nil {
		s.Logger.Error("sftp: cannot open the session", "error", err)
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	var open atomic.Int32
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, "only the sftp subsystem is available")
			sess.record(ctx, "sftp.request.refused", "refused", map[string]any{"request": "channel:" + truncate(nc.ChannelType(), 64)})
			continue
		}
		if open.Load() >= MaxChannels {
			_ = nc.Reject(ssh.ResourceShortage, "too many channels open on this connection")
			sess.record(ctx, "sftp.request.refused", "refused", map[string]any{"request": "channel:session", "reason": "too_many_channels"})
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			defer func() { _ = ch.Close() }()
			s.serveChannel(sess, ch, creqs)
		}()
	}
	wg.Wait()
	sess.record(ctx, "sftp.disconnect", "success", nil)
}

func durOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// serveChannel answers a session channel's requests: the sftp subsystem
// only (no shell, no exec, no forwarding).
func (s *Service) serveChannel(sess *session, ch ssh.Channel, reqs <-chan *ssh.Request) {
	started := false
	for req := range reqs {
		if req.Type == "subsystem" && !started && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp" {
			started = true
			_ = req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: sess, FilePut: sess, FileCmd: sess, FileList: sess},
				sftp.WithStartDirectory("/"))
			_ = srv.Serve()
			_ = srv.Close()
			return
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
		if req.Type == "exec" || req.Type == "shell" || req.Type == "subsystem" {
			sess.record(sess.ctx, "sftp.request.refused", "refused", map[string]any{"request": req.Type})
		}
	}
}

func (s *Service) serverConfig(ctx context.Context, cs *connState, hostKeys []ssh.Signer) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		Config:                  ssh.Config{KeyExchanges: KeyExchanges(), Ciphers: Ciphers(), MACs: MACs()},
		PublicKeyAuthAlgorithms: PublicKeyAlgorithms(),
		MaxAuthTries:            6,
		ServerVersion:           "SSH-2.0-Relais",
		PublicKeyCallback: func(cm ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return s.checkKey(ctx, cs, cm.User(), key)
		},
		AuthLogCallback: func(cm ssh.ConnMetadata, method string, err error) {
			switch {
			case err == nil || method == "publickey":
			case method == "none":
				cs.mu.Lock()
				cs.user = truncate(cm.User(), 128)
				cs.mu.Unlock()
			default:
				cs.add(attempt{method: truncate(method, 32), user: truncate(cm.User(), 128), reason: "method_not_allowed"})
			}
		},
		// No PasswordCallback, no KeyboardInteractiveCallback: public keys only (XFER-1).
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

var errRefused = errors.New("refused")

// checkKey decides a public-key attempt. The account's networks, expiry and
// the address's failure count are checked before the key is looked at.
func (s *Service) checkKey(ctx context.Context, cs *connState, user string, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	at := attempt{method: "publickey", user: truncate(user, 128), fingerprint: fp}
	fail := func(reason string) (*ssh.Permissions, error) {
		at.reason = reason
		cs.add(at)
		return nil, errRefused
	}
	slug, name, ok := strings.Cut(user, ".")
	if !ok || !accountNameRE.MatchString(name) || tenants.ValidateSlug(slug) != nil {
		return fail("unknown_account")
	}
	t, err := s.Tenants.Get(ctx, slug)
	if err != nil || t.Status != tenants.StatusActive {
		return fail("unknown_account")
	}
	at.tenantID = t.ID
	acct, err := s.Account(ctx, t.ID, name)
	if err != nil {
		return fail("unknown_account")
	}
	at.accountID = acct.ID
	if !acct.Allows(cs.ip) {
		return fail("address_not_allowed")
	}
	if acct.ExpiresAt != nil && !s.now().Before(*acct.ExpiresAt) {
		return fail("account_expired")
	}
	if over, err := s.overFailureLimit(ctx, t.ID, cs.ip); err != nil || over {
		return fail("too_many_failures")
	}
	if checkKeyStrength(key) != nil || !slices.ContainsFunc(acct.Keys, func(k Key) bool { return k.Fingerprint == fp }) {
		return fail("unknown_key")
	}
	return &ssh.Permissions{Extensions: map[string]string{"tenant": t.ID, "account": acct.ID, "fingerprint": fp}}, nil
}

// tenantOf returns the id of the tenant a user name names, or "".
func (s *Service) tenantOf(ctx context.Context, user string) string {
	slug, _, ok := strings.Cut(user, ".")
	if !ok || tenants.ValidateSlug(slug) != nil {
		return ""
	}
	t, err := s.Tenants.Get(ctx, slug)
	if err != nil {
		return ""
	}
	return t.ID
}

func (s *Service) lockout(ctx context.Context, tenantID string) config.LockoutPolicy {
	if tenantID != "" {
		if p, err := s.Tenants.Policy(ctx, tenantID); err == nil {
			return p.Lockout
		}
	}
	return s.Tenants.Defaults.Lockout
}

// overFailureLimit reports whether addr has failed too often in the
// tenant's window (the counters of identity's sign-in, AUTH brute-force
// controls).
func (s *Service) overFailureLimit(ctx context.Context, tenantID string, addr netip.Addr) (bool, error) {
	lp := s.lockout(ctx, tenantID)
	var count int
	err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT count FROM ip_failures WHERE tenant_id = $1 AND ip = $2 AND window_start >= $3`,
			addr.String(), store.Micros(s.now().Add(-lp.Window.D()))).Scan(&count)
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return count >= lp.MaxFailuresPerIP, nil
}

// countFailure adds a failed authentication of addr to the tenant's
// per-address counter (tenant "" for unknown accounts).
func (s *Service) countFailure(ctx context.Context, tx *store.Tx, addr netip.Addr, lp config.LockoutPolicy) error {
	now := s.now()
	_, err := tx.Exec(ctx, `INSERT INTO ip_failures (tenant_id, ip, window_start, count) VALUES ($1, $2, $3, 1)
		ON CONFLICT (tenant_id, ip) DO UPDATE SET
			count = CASE WHEN ip_failures.window_start < $4 THEN 1 ELSE ip_failures.count + 1 END,
			window_start = CASE WHEN ip_failures.window_start < $4 THEN $3 ELSE ip_failures.window_start END`,
		addr.String(), store.Micros(now), store.Micros(now.Add(-lp.Window.D())))
	return err
}

// authFailed records a connection that did not authenticate: each attempt
// in the log of the tenant it named (the operator's log otherwise), and one
// failure on the address's counter.
func (s *Service) authFailed(ctx context.Context, cs *connState, herr error) {
	ctx = context.WithoutCancel(ctx)
	cs.mu.Lock()
	atts := slices.Clone(cs.attempts)
	user := cs.user
	cs.mu.Unlock()
	if len(atts) == 0 && user != "" {
		// The client asked which methods are accepted and had none to
		// offer (a password-only client).
		atts = append(atts, attempt{method: "none", user: user, tenantID: s.tenantOf(ctx, user), reason: "no_acceptable_method"})
	}
	if len(atts) == 0 {
		// No authentication attempt: a failed handshake (no common
		// algorithm, timeout, scanner). It counts on the operator's
		// per-address counter, so that a client opening connection after
		// connection is refused before the handshake once over the limit
		// (and its refusals are rate-limited in the trail).
		lp := s.lockout(ctx, "")
		err := s.inLog(ctx, "", func(tx *store.Tx) error {
			if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "sftp.handshake", ObjectType: "sftp_connection",
				Actor: audit.Actor{Type: audit.ActorSystem, ID: "sftp"}, IP: cs.ip.String(), UserAgent: "sftp",
				Details: map[string]any{"outcome": "failure", "reason": truncate(herr.Error(), 300), "source_port": cs.port}}); err != nil {
				return err
			}
			return s.countFailure(ctx, tx, cs.ip, lp)
		})
		if err != nil {
			s.Logger.Error("sftp: cannot record a failed handshake", "error", err)
		}
		return
	}
	byTenant := map[string][]attempt{}
	for _, a := range atts {
		byTenant[a.tenantID] = append(byTenant[a.tenantID], a)
	}
	for tid, as := range byTenant {
		lp := s.lockout(ctx, tid) // before the transaction: SQLite has one writer
		write := func(tx *store.Tx) error {
			for _, a := range as {
				if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "sftp.auth", ObjectType: "sftp_account",
					ObjectID: a.accountID, Actor: audit.Actor{Type: ActorSFTP, ID: a.accountID}, IP: cs.ip.String(), UserAgent: "sftp",
					Details: map[string]any{"outcome": "failure", "reason": a.reason, "method": a.method, "username": a.user,
						"key_fingerprint": a.fingerprint, "source_port": cs.port}}); err != nil {
					return err
				}
			}
			return s.countFailure(ctx, tx, cs.ip, lp)
		}
		if err := s.inLog(ctx, tid, write); err != nil {
			s.Logger.Error("sftp: cannot record a failed authentication", "error", err)
		}
	}
}

// MaxChannels bounds the session channels open at once on one connection
// (each runs an SFTP server with its own buffers).
const MaxChannels = 4

// Connection limits: in total and per address (per /64 for IPv6).
const (
	maxConns      = 512
	maxConnsPerIP = 16
)

// connLimits counts open connections, and rate-limits the audit events of
// refused connections (one per address, or IPv6 /64, per minute, with the count of the
// ones not recorded), so a scan cannot flood the trail.
type connLimits struct {
	mu      sync.Mutex
	total   int
	perIP   map[netip.Addr]int
	refused map[netip.Addr]*refusal
}

type refusal struct {
	at         time.Time
	suppressed int
}

// connKey is what the per-address limit counts: an IPv4 address, or the
// /64 of an IPv6 address (one subscriber usually holds a whole /64).
func connKey(ip netip.Addr) netip.Addr {
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func (l *connLimits) enter(ip netip.Addr) bool {
	ip = connKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP == nil {
		l.perIP = map[netip.Addr]int{}
	}
	if l.total >= maxConns || l.perIP[ip] >= maxConnsPerIP {
		return false
	}
	l.total++
	l.perIP[ip]++
	return true
}

func (l *connLimits) leave(ip netip.Addr) {
	ip = connKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// shouldRecord reports whether a refusal of ip (of its /64 for IPv6) is
// recorded now, and how many were not recorded since the last one.
func (l *connLimits) shouldRecord(ip netip.Addr, now time.Time) (bool, int) {
	ip = connKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refused == nil {
		l.refused = map[netip.Addr]*refusal{}
	}
	r, ok := l.refused[ip]
	if ok && now.Sub(r.at) < time.Minute && !now.Before(r.at) {
		r.suppressed++
		return false, 0
	}
	if len(l.refused) > 10000 {
		clear(l.refused) // bounded memory under a wide scan
	}
	n := 0
	if ok {
		n = r.suppressed
	}
	l.refused[ip] = &refusal{at: now}
	return true, n
}

// refused records a connection closed before the handshake.
func (s *Service) refused(ctx context.Context, cs *connState, reason string) {
	if ok, n := s.conns.shouldRecord(cs.ip, s.now()); ok {
		s.recordPlatform(ctx, cs, "sftp.connect", "refused", map[string]any{"reason": reason, "refused_since_last_event": n})
	}
}

// inLog runs fn in a transaction of a tenant, or of the operator's scope
// for tenant "".
func (s *Service) inLog(ctx context.Context, tenantID string, fn func(*store.Tx) error) error {
	if tenantID == "" {
		return s.DB.Platform(ctx, func(p *store.PlatformTx) error { return fn(p.Tenant("")) })
	}
	return s.DB.Tenant(tenantID).Tx(ctx, fn)
}

// recordPlatform writes a connection event in the operator's log.
func (s *Service) recordPlatform(ctx context.Context, cs *connState, action, outcome string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["outcome"], details["source_port"] = outcome, cs.port
	err := s.DB.Platform(context.WithoutCancel(ctx), func(p *store.PlatformTx) error {
		_, err := audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAuth, Action: action, ObjectType: "sftp_connection",
			Actor: audit.Actor{Type: audit.ActorSystem, ID: "sftp"}, IP: cs.ip.String(), UserAgent: "sftp", Details: details})
		return err
	})
	if err != nil {
		s.Logger.Error("sftp: cannot record a connection", "error", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
