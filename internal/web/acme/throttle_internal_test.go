package acme

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// Challenge look-ups come from unauthenticated requests: a flood of unknown
// http-01 tokens or tls-alpn-01 names must not turn into store
// transactions (on SQLite each takes the write lock). After a flood, a
// challenge held only in the store (accepted by another node) is not looked
// up until the limiter refills; names that are not configured never reach
// the store.
func TestChallengeLookupsAreBounded(t *testing.T) {
	ctx := context.Background()
	db := storetest.OpenSQLite(t, storetest.Options{})
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Domains: []string{"relais.example"}, DirectoryURL: "https://127.0.0.1:9/dir", DB: db, Master: mk})
	if err != nil {
		t.Fatal(err)
	}
	// Another node accepted a challenge: it is in the store only.
	if err := db.Platform(ctx, func(p *store.PlatformTx) error {
		return m.put(ctx, p, "http01:tok-from-node-b", []byte("tok-from-node-b.thumb"), nil, time.Now().Add(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	h := m.HTTPHandler(http.NotFoundHandler())
	get := func(token string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/acme-challenge/"+token, nil))
		return rec.Code
	}
	if code := get("tok-from-node-b"); code != 200 {
		t.Fatalf("a stored challenge is not served: %d", code)
	}
	for i := 0; i < 500; i++ {
		if code := get(fmt.Sprintf("probe-%d", i)); code != 404 {
			t.Fatalf("probe answered %d", code)
		}
	}
	if m.lookups.Tokens() >= 1 {
		t.Fatalf("after a flood the limiter still allows look-ups (%v tokens)", m.lookups.Tokens())
	}
	if code := get("tok-from-node-b"); code != 404 {
		t.Fatalf("the store was read during the flood: %d", code)
	}
	time.Sleep(time.Second / challengeLookupsPerSecond * 2)
	if code := get("tok-from-node-b"); code != 200 {
		t.Fatalf("the stored challenge is not served once the flood is over: %d", code)
	}
	// tls-alpn-01 for a name that is not configured: refused without a
	// look-up (the limiter's tokens are untouched).
	before := m.lookups.Tokens()
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example", SupportedProtos: []string{ALPNProto}}); err == nil {
		t.Fatal("a challenge certificate for a name that is not configured")
	}
	if after := m.lookups.Tokens(); after < before-0.01 {
		t.Fatalf("a probe for a foreign name consumed a look-up (%v -> %v)", before, after)
	}
}
