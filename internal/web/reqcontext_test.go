package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/accesslog"
	"github.com/relais-dev/relais/internal/web/problem"
)

type otherKey struct{}

// TestRequestContext: the one context node instrument makes answers every
// lookup the four context values answered (request id, audit metadata,
// access log info, principal), passes other keys and cancellation to its
// parent, and a context derived from it still sees its values.
func TestRequestContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "kept"))
	defer cancel()
	rc := &requestContext{Context: parent, info: requestInfo{sourcePort: "4242",
		meta: audit.Meta{IP: "192.0.2.7", UserAgent: "ua", RequestID: "req-1"}}}
	var ctx context.Context = rc
	if got := problem.RequestID(ctx); got != "req-1" {
		t.Fatalf("problem.RequestID = %q", got)
	}
	if m := audit.MetaFrom(ctx); m.IP != "192.0.2.7" || m.RequestID != "req-1" || m.UserAgent != "ua" || m.Actor != (audit.Actor{}) {
		t.Fatalf("audit.MetaFrom = %+v", m)
	}
	if SourcePort(ctx) != "4242" || ctx.Value(otherKey{}) != "kept" {
		t.Fatal("source port or a parent value lost")
	}
	if PrincipalFrom(ctx) != nil {
		t.Fatal("principal before authentication")
	}
	// A principal set in a parent (no node in between) is still found.
	pp := &identity.Principal{ClientID: "outer"}
	inner := &requestContext{Context: context.WithValue(parent, principalKey{}, pp)}
	if PrincipalFrom(inner) != pp {
		t.Fatal("parent principal hidden by an empty node")
	}
	// What require records.
	p := &identity.Principal{TenantID: "t1", ClientID: "c1"}
	SetPrincipal(ctx, p.TenantID, actorOf(p))
	rc.info.principal, rc.info.meta.Actor = p, actorOf(p)
	derived, stop := context.WithTimeout(ctx, 1<<40)
	defer stop()
	if PrincipalFrom(derived) != p || audit.MetaFrom(derived).Actor != (audit.Actor{Type: audit.ActorAPI, ID: "c1"}) ||
		problem.RequestID(derived) != "req-1" || rc.info.tenant != "t1" || rc.info.actor != (audit.Actor{Type: "api", ID: "c1"}) {
		t.Fatal("values lost through a derived context")
	}
	// Values added below the node shadow it, as with context.WithValue.
	if got := audit.MetaFrom(audit.WithMeta(derived, audit.Meta{RequestID: "x"})); got.RequestID != "x" {
		t.Fatalf("inner metadata not preferred: %+v", got)
	}
	cancel()
	<-derived.Done()
	if rc.Err() == nil {
		t.Fatal("cancellation not passed through")
	}
}

// TestAccessLogLineOfABearerRequest: the access log line of an API request
// keeps its fields (request id, route, status, duration, remote IP, tenant,
// actor), and the handler sees the caller through the one context node.
func TestAccessLogLineOfABearerRequest(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, err := ts.Create(ctx, "A", "ta")
		if err != nil {
			t.Fatal(err)
		}
		acc := &access.Service{DB: db}
		id := &identity.Service{DB: db, Tenants: ts, Keyring: tenants.NewKeyring(db, mk, 0), Perms: access.Source{S: acc}}
		ks, err := jwtauth.NewKeyStore(db, mk, jwtauth.KeyStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.EnsureCurrent(ctx); err != nil {
			t.Fatal(err)
		}
		cl, _, err := id.CreateClient(ctx, a.ID, "ci", nil)
		if err != nil {
			t.Fatal(err)
		}
		iss := jwtauth.NewIssuer(ks, jwtauth.Config{})
		tok, _, err := iss.Issue(ctx, jwtauth.IssueRequest{Tenant: a.ID, Subject: cl.ID, ClientID: cl.ID, Scopes: []string{"contacts:read"}, Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Through slog's JSON handler and through accesslog's direct
		// encoder (the logger relais serve uses): the same fields.
		for name, mk := range map[string]func(io.Writer) slog.Handler{
			"slog":      func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
			"accesslog": func(w io.Writer) slog.Handler { return accesslog.NewHandler(w, nil) },
		} {
			var logs bytes.Buffer
			s := New(Options{Logger: slog.New(mk(&logs)), DB: db, Tenants: ts, Identity: id, Access: acc,
				Keys: ks, Issuer: iss, Verifier: jwtauth.NewVerifier(ks, jwtauth.Config{})})
			if (s.accessLog != nil) != (name == "accesslog") {
				t.Fatalf("%s: direct access log %v", name, s.accessLog != nil)
			}
			req := httptest.NewRequest("GET", "/api/v1/me", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), cl.ID) {
				t.Fatalf("GET /api/v1/me: %d %s", rec.Code, rec.Body)
			}
			var line map[string]any
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("%s: access log %q: %v", name, logs.String(), err)
			}
			want := map[string]any{"msg": "request", "level": "INFO", "request_id": rec.Header().Get("X-Request-Id"), "method": "GET",
				"route": "GET /api/v1/me", "path": "/api/v1/me", "status": float64(200), "remote_ip": "192.0.2.1",
				"tenant": a.ID, "actor": "api:" + cl.ID}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s: access log %s = %v, want %v", name, k, line[k], v)
				}
			}
			for _, k := range []string{"time", "bytes", "duration_us"} {
				if _, ok := line[k]; !ok {
					t.Errorf("%s: access log without %s: %s", name, k, logs.String())
				}
			}
			if len(line) != len(want)+3 {
				t.Errorf("%s: access log fields %v", name, line)
			}
		}
	})
}

// TestRequestIDs: ids from the batched source are 24 hex digits and never
// repeat, from many goroutines at once.
func TestRequestIDs(t *testing.T) {
	var src idSource
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				id := src.newID()
				if len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" {
					t.Errorf("id %q", id)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("id %s twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestSince: on the real clock (no Now, or time.Now itself, as the app
// passes) the end of a request is its start plus the monotonic elapsed
// time, within the wall clock's readings around it; on an injected clock
// it is that clock's reading.
func TestSince(t *testing.T) {
	for name, now := range map[string]func() time.Time{"default": nil, "time.Now": time.Now} {
		s := New(Options{Now: now})
		if !s.realClock {
			t.Fatalf("%s: not seen as the real clock", name)
		}
		before := time.Now()
		start := s.now()
		end, d := s.since(start)
		after := time.Now()
		if d < 0 || !end.Equal(start.Add(d)) || end.Before(before) || end.After(after) {
			t.Fatalf("%s: start %v end %v elapsed %v, outside %v..%v", name, start, end, d, before, after)
		}
	}
	fake := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { fake = fake.Add(time.Second); return fake }})
	if s.realClock {
		t.Fatal("an injected clock seen as the real one")
	}
	start := s.now()
	end, d := s.since(start)
	if d != time.Second || !end.Equal(fake) {
		t.Fatalf("injected clock: end %v elapsed %v", end, d)
	}
}

// TestInFlightGauge: relais_http_requests_in_flight counts the request
// being served, and nothing once it has ended, even after a panic.
func TestInFlightGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Options{Registry: reg})
	read := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "relais_http_requests_in_flight" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no relais_http_requests_in_flight")
		return 0
	}
	var inside float64
	h := s.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside = read()
		if r.URL.Path == "/panic" {
			panic("boom")
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if inside != 1 || read() != 0 {
		t.Fatalf("in flight: %v during the request, %v after", inside, read())
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/panic", nil))
	if inside != 1 || read() != 0 {
		t.Fatalf("in flight: %v during the panicking request, %v after", inside, read())
	}
}
