package jwtauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// start is the fake clock's initial time.
var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// fakeClock is an injectable clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// node is one Relais process: its own key store, issuer and verifier.
type node struct {
	ks  *KeyStore
	iss *Issuer
	ver *Verifier
}

// env is a store, a master key and a clock shared by the nodes of a test.
type env struct {
	db  *store.DB
	mk  keys.MasterKey
	clk *fakeClock
	// mono replaces every node's real clock for reload rate limits and
	// cache ages, so that tests decide when a reload is allowed.
	mono *fakeClock
	*node
}

// run calls fn on a fresh env per dialect, with the fake clock as both the
// store's clock and the key store's.
func run(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	clk := &fakeClock{}
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		clk.Set(start)
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatalf("master key: %v", err)
		}
		e := &env{db: db, mk: mk, clk: clk, mono: &fakeClock{t: start}}
		e.node = e.newNode(t)
		fn(t, e)
	})
}

// newNode starts another node on the same store, master key and clock.
func (e *env) newNode(t testing.TB) *node {
	t.Helper()
	ks, err := NewKeyStore(e.db, e.mk, KeyStoreOptions{Clock: e.clk.Now})
	if err != nil {
		t.Fatalf("NewKeyStore: %v", err)
	}
	ks.mono = e.mono.Now
	return &node{ks: ks, iss: NewIssuer(ks, Config{}), ver: NewVerifier(ks, Config{})}
}

func ensure(t testing.TB, ks *KeyStore) {
	t.Helper()
	if err := ks.EnsureCurrent(context.Background()); err != nil {
		t.Fatalf("EnsureCurrent: %v", err)
	}
}

func goodRequest() IssueRequest {
	return IssueRequest{Tenant: "acme", Subject: "svc-1", ClientID: "cli-1", Scopes: []string{"contacts:read", "messages:send"}, Version: 3}
}

func issue(t testing.TB, n *node, req IssueRequest) string {
	t.Helper()
	tok, _, err := n.iss.Issue(context.Background(), req)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func mustVerify(t testing.TB, n *node, tok string) *Claims {
	t.Helper()
	c, err := n.ver.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// VerifyAccess accepts it too, with the same claims.
	a, err := n.ver.VerifyAccess(context.Background(), tok)
	if err != nil {
		t.Fatalf("VerifyAccess: %v", err)
	}
	if a != (Access{Tenant: c.Tenant, ClientID: c.ClientID, Subject: c.Subject, Scope: c.Scope, Version: c.Version, ExpiresAt: c.ExpiresAt.Time}) {
		t.Fatalf("VerifyAccess = %+v, claims %+v", a, c)
	}
	return c
}

// refused checks that Verify refuses tok with an error wrapping want.
func refused(t testing.TB, n *node, tok string, want error) {
	t.Helper()
	c, err := n.ver.Verify(context.Background(), tok)
	if err == nil {
		t.Fatalf("Verify accepted the token (claims %+v), want %v", c, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify: %v, want an error wrapping %v", err, want)
	}
	if c != nil {
		t.Fatalf("Verify returned claims with error %v", err)
	}
	// VerifyAccess refuses it the same way.
	a, err := n.ver.VerifyAccess(context.Background(), tok)
	if !errors.Is(err, want) || a != (Access{}) {
		t.Fatalf("VerifyAccess: %+v, %v, want an error wrapping %v", a, err, want)
	}
}

// currentKey returns the key the node signs with now.
func currentKey(t testing.TB, n *node) *signingKey {
	t.Helper()
	k, err := n.ks.signer(context.Background())
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	return k
}

// goodClaims are claims Verify accepts at now.
func goodClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       DefaultIssuer,
		"aud":       []string{DefaultAudience},
		"sub":       "svc-1",
		"tenant":    "acme",
		"client_id": "cli-1",
		"scope":     "contacts:read",
		"ver":       1,
		"jti":       "test-jti",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(15 * time.Minute).Unix(),
	}
}

// signToken signs claims with method and key. Header entries set to nil are
// removed; others are added or replaced.
func signToken(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign test token: %v", err)
	}
	return s
}

// b64json is the base64url of v's JSON, as in a JWS segment.
func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// segments splits a token and decodes its header and payload.
func segments(t testing.TB, tok string) (header, payload map[string]any, parts []string) {
	t.Helper()
	parts = strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	return header, payload, parts
}

// platformEvents lists the platform audit log.
func platformEvents(t testing.TB, db *store.DB) []audit.Record {
	t.Helper()
	var recs []audit.Record
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		var err error
		recs, err = audit.List(context.Background(), p.Tenant(""), 0, 1000)
		return err
	})
	if err != nil {
		t.Fatalf("list platform audit events: %v", err)
	}
	return recs
}

// keyRows lists the kids stored in signing_keys, sorted.
func keyRows(t testing.TB, db *store.DB) []string {
	t.Helper()
	var kids []string
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		rows, err := p.Query(context.Background(), `SELECT kid FROM signing_keys ORDER BY kid`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var kid string
			if err := rows.Scan(&kid); err != nil {
				return err
			}
			kids = append(kids, kid)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("list signing keys: %v", err)
	}
	return kids
}

// platformExec runs a statement in platform scope (to play the attacker with
// database access).
func platformExec(t testing.TB, db *store.DB, q string, args ...any) {
	t.Helper()
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		_, err := p.Exec(context.Background(), q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// jwksKeys parses a JWKS document.
func jwksKeys(t testing.TB, ks *KeyStore) []map[string]string {
	t.Helper()
	b, err := ks.JWKS(context.Background())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, b)
	}
	if set.Keys == nil {
		t.Fatalf("JWKS without a keys array: %s", b)
	}
	return set.Keys
}
