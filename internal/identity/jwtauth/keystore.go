package jwtauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// Alg is the only JWS algorithm this package signs with and accepts: EdDSA
// with Ed25519 keys (RFC 8037).
const Alg = "EdDSA"

// Defaults of [KeyStoreOptions].
const (
	// DefaultRotateEvery is how long a signing key signs.
	DefaultRotateEvery = 30 * 24 * time.Hour
	// DefaultOverlap is how long a retired key keeps verifying: twice the
	// longest token lifetime.
	DefaultOverlap = 2 * MaxLifetime
	// DefaultPrepublish is how long before a key retires its successor is
	// created and published.
	DefaultPrepublish = time.Hour
)

const (
	// keyAADPrefix, followed by the kid, is the associated data binding a
	// wrapped private key to its row.
	keyAADPrefix = "relais/jwt-signing-key/v1|"
	// minReloadInterval bounds reloads caused by unknown kids (and JWKS).
	minReloadInterval = time.Second
	// signerMaxAge is how old the key view may be when signing.
	signerMaxAge = time.Minute
	// maxKeyRows bounds the keys read from the store (a handful are live at
	// any time; more means someone wrote rows that are not ours).
	maxKeyRows = 64
	// maxKidLen bounds the kid accepted from a token header.
	maxKidLen = 64
	// advisoryLock serialises EnsureCurrent between nodes on PostgreSQL
	// ("relaisjw" in ASCII).
	advisoryLock int64 = 0x72656c6169736a77
)

// Audit actions recorded in the platform log (category key).
const (
	actionCreate = "jwt_signing_key.create"
	actionRetire = "jwt_signing_key.retire"
	actionDelete = "jwt_signing_key.delete"
	objectType   = "jwt_signing_key"
)

// KeyStoreOptions tune a [KeyStore]. The zero value gives the defaults.
type KeyStoreOptions struct {
	// RotateEvery is the longest a key signs after its creation
	// (DefaultRotateEvery when zero). It must exceed Prepublish.
	RotateEvery time.Duration
	// Overlap is how long a retired key keeps verifying (DefaultOverlap when
	// zero). It must be at least MaxLifetime, so that every token a key
	// signed expires before the key does.
	Overlap time.Duration
	// Prepublish is how long before the current key retires its successor
	// is created, so that it is in every JWKS and node cache before it signs
	// (the smaller of DefaultPrepublish and RotateEvery/10 when zero). It
	// must be less than RotateEvery.
	Prepublish time.Duration
	// Clock gives the time for key and token validity (the store's clock
	// when nil).
	Clock func() time.Time
	// Logger receives warnings about key rows that cannot be trusted
	// (discarded when nil).
	Logger *slog.Logger
}

// KeyStore holds the platform's token signing keys: in the store, private
// halves wrapped by the master key; in memory, a view of the live keys that
// verification reads without touching the database. It is safe for
// concurrent use; create one per process with [NewKeyStore].
type KeyStore struct {
	db          *store.DB
	master      keys.MasterKey
	clock       func() time.Time
	rotateEvery time.Duration
	overlap     time.Duration
	prepublish  time.Duration
	log         *slog.Logger
	// mono is the real (monotonic) clock for rate limits and cache ages,
	// which must not follow an injected clock. Tests replace it.
	mono func() time.Time

	view atomic.Pointer[keyView]
	// reloadSem serialises reloads (a 1-slot semaphore that a waiting
	// caller can leave when its context ends); lastReload is guarded by it.
	reloadSem  chan struct{}
	lastReload time.Time
	reloads    atomic.Int64 // loads from the store, for tests

	mu      sync.Mutex
	trusted map[string]*trustedKey // kid -> authenticated key material
}

// trustedKey is key material whose private half unwrapped under the master
// key and matched the stored public key.
type trustedKey struct {
	digest [sha256.Size]byte // of the row's public_key and private_wrap
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
}

// signingKey is one live key as of a view. Immutable once in a view.
type signingKey struct {
	kid     string
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	created time.Time
	retire  time.Time // stops signing
	expires time.Time // stops verifying
}

// keyView is an immutable snapshot of the live keys.
type keyView struct {
	byKid    map[string]*signingKey
	list     []*signingKey // newest first
	loadedAt time.Time     // mono
}

// NewKeyStore returns a KeyStore over db whose private keys are wrapped by
// master. It does not touch the store: call [KeyStore.EnsureCurrent] before
// issuing the first token.
func NewKeyStore(db *store.DB, master keys.MasterKey, opts KeyStoreOptions) (*KeyStore, error) {
	if db == nil || master == nil {
		return nil, errors.New("jwtauth: a store and a master key are required")
	}
	if opts.RotateEvery == 0 {
		opts.RotateEvery = DefaultRotateEvery
	}
	if opts.Overlap == 0 {
		opts.Overlap = DefaultOverlap
	}
	if opts.Prepublish == 0 {
		opts.Prepublish = min(DefaultPrepublish, opts.RotateEvery/10)
	}
	switch {
	case opts.RotateEvery < 0 || opts.Overlap < 0 || opts.Prepublish < 0:
		return nil, errors.New("jwtauth: key periods must not be negative")
	case opts.Overlap < MaxLifetime:
		return nil, fmt.Errorf("jwtauth: overlap %v is shorter than the longest token lifetime %v: tokens would outlive their key", opts.Overlap, MaxLifetime)
	case opts.Prepublish >= opts.RotateEvery:
		return nil, fmt.Errorf("jwtauth: prepublish %v must be shorter than the rotation period %v", opts.Prepublish, opts.RotateEvery)
	}
	if opts.Clock == nil {
		opts.Clock = db.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &KeyStore{
		db:          db,
		master:      master,
		clock:       opts.Clock,
		rotateEvery: opts.RotateEvery,
		overlap:     opts.Overlap,
		prepublish:  opts.Prepublish,
		log:         opts.Logger,
		mono:        time.Now,
		reloadSem:   make(chan struct{}, 1),
		trusted:     map[string]*trustedKey{},
	}, nil
}

// EnsureCurrent makes sure a key can sign now and after the current one
// retires: it creates the first key, or the next one when the current key is
// within Prepublish of its retirement (or older than RotateEvery minus
// Prepublish). It creates at most one key per call and records the creation,
// and the retirement of the keys the new one replaces, in the platform audit
// log. Calls from several nodes at once are serialised by the store and
// create one key; call it at start-up and then every few minutes.
func (ks *KeyStore) EnsureCurrent(ctx context.Context) error {
	err := ks.db.Platform(ctx, func(p *store.PlatformTx) error {
		if p.Dialect() == store.Postgres {
			if _, err := p.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryLock); err != nil {
				return fmt.Errorf("lock signing keys: %w", err)
			}
		}
		now := ks.clock()
		live, err := ks.loadKeys(ctx, p, now)
		if err != nil {
			return err
		}
		view := newView(live, time.Time{})
		if cur := view.newestUnretired(now); cur != nil {
			due := earliest(cur.retire, cur.created.Add(ks.rotateEvery)).Add(-ks.prepublish)
			if now.Before(due) {
				return nil
			}
		}
		k, err := ks.createKey(ctx, p, now)
		if err != nil {
			return err
		}
		// The new key signs once published, or at once when nothing else
		// can sign.
		activate := k.created
		if view.signer(now, ks.prepublish) != nil {
			activate = k.created.Add(ks.prepublish)
		}
		// Retire the keys the new one replaces: every key that has not
		// retired yet, and the newest one even if it retired on its own
		// (EnsureCurrent came late), since no successor has recorded its
		// retirement. Older retired keys got theirs when their successor
		// was created.
		for i, old := range live {
			if i != 0 && !old.retire.After(now) {
				continue
			}
			if err := ks.retireKey(ctx, p, old, activate, k.kid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("jwtauth: ensure a current signing key: %w", err)
	}
	if _, err := ks.reload(ctx, nil, true); err != nil {
		return err
	}
	return nil
}

// createKey generates, wraps, stores and audits a new key.
func (ks *KeyStore) createKey(ctx context.Context, p *store.PlatformTx, now time.Time) (*signingKey, error) {
	kid := randomID()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	seed := priv.Seed()
	wrapped, err := ks.master.Wrap(ctx, seed, keyAAD(kid))
	clear(seed)
	if err != nil {
		return nil, fmt.Errorf("wrap signing key %s: %w", kid, err)
	}
	created := now.UTC().Truncate(time.Microsecond)
	k := &signingKey{
		kid:     kid,
		pub:     pub,
		priv:    priv,
		created: created,
		retire:  created.Add(ks.rotateEvery),
		expires: created.Add(ks.rotateEvery + ks.overlap),
	}
	if _, err := p.Exec(ctx, `INSERT INTO signing_keys (kid, alg, public_key, private_wrap, created_at, retire_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.kid, Alg, []byte(pub), wrapped, store.Micros(k.created), store.Micros(k.retire), store.Micros(k.expires)); err != nil {
		return nil, fmt.Errorf("store signing key %s: %w", kid, err)
	}
	if _, err := audit.Append(ctx, p.Tenant(""), audit.Event{
		Category: audit.CategoryKey, Action: actionCreate, ObjectType: objectType, ObjectID: kid,
		Details: map[string]any{
			"alg":        Alg,
			"wrapped_by": ks.master.ID(),
			"created_at": k.created.Format(time.RFC3339),
			"retire_at":  k.retire.Format(time.RFC3339),
			"expires_at": k.expires.Format(time.RFC3339),
		},
	}); err != nil {
		return nil, fmt.Errorf("audit creation of signing key %s: %w", kid, err)
	}
	p.AfterCommit(func() {
		ks.mu.Lock()
		ks.trusted[kid] = &trustedKey{digest: rowDigest(pub, wrapped), pub: pub, priv: priv}
		ks.mu.Unlock()
	})
	return k, nil
}

// retireKey records that old stops signing at the latest at activate, when
// its successor takes over, and brings its dates forward if they were later.
func (ks *KeyStore) retireKey(ctx context.Context, p *store.PlatformTx, old *signingKey, activate time.Time, successor string) error {
	retire := earliest(old.retire, activate)
	expires := earliest(old.expires, retire.Add(ks.overlap))
	if !retire.Equal(old.retire) || !expires.Equal(old.expires) {
		if _, err := p.Exec(ctx, `UPDATE signing_keys SET retire_at = $1, expires_at = $2 WHERE kid = $3`,
			store.Micros(retire), store.Micros(expires), old.kid); err != nil {
			return fmt.Errorf("retire signing key %s: %w", old.kid, err)
		}
	}
	if _, err := audit.Append(ctx, p.Tenant(""), audit.Event{
		Category: audit.CategoryKey, Action: actionRetire, ObjectType: objectType, ObjectID: old.kid,
		Details: map[string]any{
			"successor":  successor,
			"retire_at":  retire.Format(time.RFC3339),
			"expires_at": expires.Format(time.RFC3339),
		},
	}); err != nil {
		return fmt.Errorf("audit retirement of signing key %s: %w", old.kid, err)
	}
	return nil
}

// Prune deletes the keys that no longer verify (past their expires_at), each
// with an audit event, and returns how many it deleted. Tokens they signed
// have all expired by then.
func (ks *KeyStore) Prune(ctx context.Context) (int, error) {
	var n int
	err := ks.db.Platform(ctx, func(p *store.PlatformTx) error {
		now := store.Micros(ks.clock())
		rows, err := p.Query(ctx, `SELECT kid FROM signing_keys WHERE expires_at <= $1 ORDER BY kid`, now)
		if err != nil {
			return fmt.Errorf("list expired signing keys: %w", err)
		}
		var kids []string
		for rows.Next() {
			var kid string
			if err := rows.Scan(&kid); err != nil {
				_ = rows.Close()
				return fmt.Errorf("list expired signing keys: %w", err)
			}
			kids = append(kids, kid)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("list expired signing keys: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list expired signing keys: %w", err)
		}
		for _, kid := range kids {
			if _, err := p.Exec(ctx, `DELETE FROM signing_keys WHERE kid = $1 AND expires_at <= $2`, kid, now); err != nil {
				return fmt.Errorf("delete signing key %s: %w", kid, err)
			}
			if _, err := audit.Append(ctx, p.Tenant(""), audit.Event{
				Category: audit.CategoryKey, Action: actionDelete, ObjectType: objectType, ObjectID: kid,
			}); err != nil {
				return fmt.Errorf("audit deletion of signing key %s: %w", kid, err)
			}
		}
		n = len(kids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("jwtauth: prune signing keys: %w", err)
	}
	if n > 0 {
		if _, err := ks.reload(ctx, nil, true); err != nil {
			return n, err
		}
	}
	return n, nil
}

// jwk is one RFC 7517 / RFC 8037 public key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the RFC 7517 JSON Web Key Set of every key still valid for
// verification (including a successor published ahead of its use), newest
// first. It reads the store at most once per second; the HTTP layer may let
// clients cache the result for a few minutes.
func (ks *KeyStore) JWKS(ctx context.Context) ([]byte, error) {
	v := ks.view.Load()
	if v == nil || ks.mono().Sub(v.loadedAt) >= minReloadInterval {
		var err error
		if v, err = ks.reload(ctx, v, false); err != nil {
			return nil, err
		}
	}
	now := ks.clock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range v.list {
		if !k.expires.After(now) {
			continue
		}
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub),
			Kid: k.kid, Alg: Alg, Use: "sig",
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: encode JWKS: %w", err)
	}
	return b, nil
}

// errUnknownKid: no live, trusted key has the token's kid.
var errUnknownKid = errors.New("unknown key id")

// errKeyExpired: the token's key is past its expires_at.
var errKeyExpired = errors.New("signing key expired")

// verificationKey returns the key for kid. An unknown kid causes one reload
// (rate-limited); an error that is neither errUnknownKid nor errKeyExpired is
// a store failure.
func (ks *KeyStore) verificationKey(ctx context.Context, kid string, now time.Time) (*signingKey, error) {
	v := ks.view.Load()
	k := v.get(kid)
	if k == nil {
		var err error
		if v, err = ks.reload(ctx, v, false); err != nil {
			return nil, err
		}
		if k = v.get(kid); k == nil {
			return nil, errUnknownKid
		}
	}
	if !k.expires.After(now) {
		return nil, errKeyExpired
	}
	return k, nil
}

// signer returns the key to sign with now, reloading a view older than
// signerMaxAge, and creating a key (EnsureCurrent) when none can sign.
func (ks *KeyStore) signer(ctx context.Context) (*signingKey, error) {
	v := ks.view.Load()
	if v == nil || ks.mono().Sub(v.loadedAt) >= signerMaxAge {
		nv, err := ks.reload(ctx, v, false)
		if err != nil && v == nil {
			return nil, err
		}
		if err == nil {
			v = nv
		}
	}
	if k := v.signer(ks.clock(), ks.prepublish); k != nil {
		return k, nil
	}
	// No key can sign: the first start, or EnsureCurrent has not run for a
	// whole rotation period. Heal rather than fail, as the system.
	m := audit.MetaFrom(ctx)
	sctx := audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorSystem, ID: "relais"}, RequestID: m.RequestID})
	if err := ks.EnsureCurrent(sctx); err != nil {
		return nil, err
	}
	if k := ks.view.Load().signer(ks.clock(), ks.prepublish); k != nil {
		return k, nil
	}
	return nil, errors.New("jwtauth: no signing key available")
}

// reload reads the live keys from the store and publishes a new view. Unless
// force is set, it returns the current view without reading when another
// reload replaced seen meanwhile, or when the last read was less than
// minReloadInterval ago.
func (ks *KeyStore) reload(ctx context.Context, seen *keyView, force bool) (*keyView, error) {
	select {
	case ks.reloadSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("jwtauth: load signing keys: %w", ctx.Err())
	}
	defer func() { <-ks.reloadSem }()
	cur := ks.view.Load()
	if !force {
		if cur != nil && cur != seen {
			return cur, nil
		}
		if !ks.lastReload.IsZero() && ks.mono().Sub(ks.lastReload) < minReloadInterval {
			if cur == nil {
				return nil, errors.New("jwtauth: signing keys not loaded yet (the last attempt failed less than a second ago)")
			}
			return cur, nil
		}
	}
	ks.lastReload = ks.mono()
	ks.reloads.Add(1)
	var live []*signingKey
	err := ks.db.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		live, err = ks.loadKeys(ctx, p, ks.clock())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jwtauth: load signing keys: %w", err)
	}
	ks.mu.Lock()
	for kid := range ks.trusted {
		if !containsKid(live, kid) {
			delete(ks.trusted, kid)
		}
	}
	ks.mu.Unlock()
	v := newView(live, ks.lastReload)
	ks.view.Store(v)
	return v, nil
}

func containsKid(list []*signingKey, kid string) bool {
	for _, k := range list {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// keyRow is a signing_keys row as read.
type keyRow struct {
	kid, alg                 string
	pub, wrapped             []byte
	created, retire, expires int64
}

// loadKeys reads the keys that still verify at now, newest first, keeping
// only those it can authenticate.
func (ks *KeyStore) loadKeys(ctx context.Context, p *store.PlatformTx, now time.Time) ([]*signingKey, error) {
	rows, err := p.Query(ctx, `SELECT kid, alg, public_key, private_wrap, created_at, retire_at, expires_at
		FROM signing_keys WHERE expires_at > $1 ORDER BY created_at DESC, kid DESC LIMIT $2`, store.Micros(now), maxKeyRows)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	var raw []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.kid, &r.alg, &r.pub, &r.wrapped, &r.created, &r.retire, &r.expires); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read signing keys: %w", err)
		}
		raw = append(raw, r)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	live := make([]*signingKey, 0, len(raw))
	for _, r := range raw {
		t, err := ks.authenticate(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("read signing keys: %w", ctx.Err())
			}
			ks.log.Warn("jwtauth: ignoring a signing key that cannot be trusted", "kid", r.kid, "error", err)
			continue
		}
		live = append(live, &signingKey{
			kid:     r.kid,
			pub:     t.pub,
			priv:    t.priv,
			created: store.FromMicros(r.created),
			retire:  store.FromMicros(r.retire),
			expires: store.FromMicros(r.expires),
		})
	}
	return live, nil
}

// authenticate unwraps the row's private key (bound to its kid) and checks
// that it matches the stored public key, remembering the result per kid and
// row content so that each key is unwrapped once per process.
func (ks *KeyStore) authenticate(ctx context.Context, r keyRow) (*trustedKey, error) {
	if r.alg != Alg {
		return nil, fmt.Errorf("algorithm %q is not %s", r.alg, Alg)
	}
	if len(r.kid) == 0 || len(r.kid) > maxKidLen {
		return nil, fmt.Errorf("kid of %d bytes", len(r.kid))
	}
	if len(r.pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key of %d bytes, want %d", len(r.pub), ed25519.PublicKeySize)
	}
	digest := rowDigest(r.pub, r.wrapped)
	ks.mu.Lock()
	t := ks.trusted[r.kid]
	ks.mu.Unlock()
	if t != nil && t.digest == digest {
		return t, nil
	}
	seed, err := ks.master.Unwrap(ctx, r.wrapped, keyAAD(r.kid))
	if err != nil {
		return nil, fmt.Errorf("unwrap private key: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		clear(seed)
		return nil, fmt.Errorf("private key of %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	clear(seed)
	pub := priv.Public().(ed25519.PublicKey)
	if subtle.ConstantTimeCompare(pub, r.pub) != 1 {
		return nil, errors.New("private key does not match the stored public key")
	}
	t = &trustedKey{digest: digest, pub: pub, priv: priv}
	ks.mu.Lock()
	ks.trusted[r.kid] = t
	ks.mu.Unlock()
	return t, nil
}

// rowDigest identifies the key material of a row, to notice a changed row.
func rowDigest(pub, wrapped []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(pub)))
	h.Write(n[:])
	h.Write(pub)
	h.Write(wrapped)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// keyAAD binds a wrapped private key to its kid.
func keyAAD(kid string) []byte { return []byte(keyAADPrefix + kid) }

// randomID returns 128 random bits in unpadded base64url.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newView(list []*signingKey, loadedAt time.Time) *keyView {
	v := &keyView{byKid: make(map[string]*signingKey, len(list)), list: list, loadedAt: loadedAt}
	for _, k := range list {
		v.byKid[k.kid] = k
	}
	return v
}

// get returns the key with kid, or nil (also on a nil view).
func (v *keyView) get(kid string) *signingKey {
	if v == nil {
		return nil
	}
	return v.byKid[kid]
}

// newestUnretired returns the newest key that has not retired at now.
func (v *keyView) newestUnretired(now time.Time) *signingKey {
	for _, k := range v.list {
		if k.retire.After(now) {
			return k
		}
	}
	return nil
}

// signer picks the key that signs at now: the newest unretired key created
// at least prepublish ago or, when there is none, the newest unretired key.
// Every node with the same keys picks the same one.
func (v *keyView) signer(now time.Time, prepublish time.Duration) *signingKey {
	if v == nil {
		return nil
	}
	for _, k := range v.list {
		if k.retire.After(now) && !k.created.Add(prepublish).After(now) {
			return k
		}
	}
	return v.newestUnretired(now)
}

// earliest returns the earlier of two times.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
