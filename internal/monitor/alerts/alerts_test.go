package alerts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/monitor/incidents"
	"github.com/relais-dev/relais/internal/monitor/notify"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// fakeClock is the test's clock, shared by the engine, the rules and the store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fakeBackups stands in for internal/backup, built in parallel: the rule
// only reads the provider interface.
type fakeBackups struct {
	mu sync.Mutex
	st monitor.BackupStatus
}

func (f *fakeBackups) BackupStatus(ctx context.Context, tenant string) (monitor.BackupStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tenant != "" {
		return monitor.BackupStatus{}, nil // platform-wide backups only, in this test
	}
	return f.st, nil
}

func (f *fakeBackups) set(fn func(*monitor.BackupStatus)) {
	f.mu.Lock()
	fn(&f.st)
	f.mu.Unlock()
}

// fakeCert stands in for the TLS front's certificate (ACME is built in parallel).
type fakeCert struct {
	mu       sync.Mutex
	notAfter time.Time
}

func (f *fakeCert) Certificate(context.Context) (monitor.CertInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return monitor.CertInfo{Subject: "CN=relais.test", KeyType: "ECDSA P-256", NotAfter: f.notAfter, Source: "file"}, nil
}

type env struct {
	db       *store.DB
	clk      *fakeClock
	engine   *alerts.Engine
	tenants  *tenants.Service
	acme     tenants.Tenant
	globex   tenants.Tenant
	backups  *fakeBackups
	cert     *fakeCert
	clockChk *clock.Checker
	skew     *time.Duration
	requests *monitor.Requests
	inc      *incidents.Service
	hooks    *hookServer
	sink     *smtpsink.Sink
	seq      int
	// fresh keeps the backups, the certificate and the clock healthy as
	// time advances (off inside the subtests that drive them).
	fresh bool
}

// renewOthers keeps the certificate and the clock healthy.
func (e *env) renewOthers(t *testing.T) {
	t.Helper()
	e.cert.mu.Lock()
	e.cert.notAfter = e.clk.Now().Add(90 * 24 * time.Hour)
	e.cert.mu.Unlock()
	if _, err := e.clockChk.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// advance moves the clock on; with fresh set, the sources that depend on
// time stay healthy (a verification just ran, the certificate was renewed,
// the clock was measured).
func (e *env) advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.clk.Add(d)
	if !e.fresh {
		return
	}
	now := e.clk.Now()
	e.backups.set(func(s *monitor.BackupStatus) { s.LastVerify, s.LastRestoreTest = now, now })
	e.cert.mu.Lock()
	e.cert.notAfter = now.Add(90 * 24 * time.Hour)
	e.cert.mu.Unlock()
	if _, err := e.clockChk.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// hookServer is a real HTTP receiver that checks each signature.
type hookServer struct {
	mu     sync.Mutex
	key    []byte
	events []alerts.Event
	bad    int
	srv    *httptest.Server
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if notify.Verify(h.key, r.Header.Get("X-Relais-Signature"), body, time.Now(), 5*time.Minute) != nil {
		h.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev alerts.Event
	if err := json.Unmarshal(body, &ev); err == nil && ev.Kind != "" {
		h.events = append(h.events, ev)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookServer) kinds(rule string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		if e.Alert.Rule == rule {
			out = append(out, e.Kind)
		}
	}
	return out
}

func setup(t *testing.T, db *store.DB, clk *fakeClock) *env {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	e := &env{db: db, clk: clk, tenants: ts, backups: &fakeBackups{}, cert: &fakeCert{notAfter: clk.Now().Add(90 * 24 * time.Hour)}}
	if e.acme, err = ts.Create(ctx, "Acme", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.globex, err = ts.Create(ctx, "Globex", "globex"); err != nil {
		t.Fatal(err)
	}
	skew := time.Duration(0)
	e.skew = &skew
	// The clock check itself is tested against a loopback NTP responder in
	// package clock; here its measurement is driven directly.
	e.clockChk = &clock.Checker{DB: db, Servers: []string{"ntp.test"}, MaxOffset: time.Second, Node: "n1", Now: clk.Now,
		Query: func(context.Context, string) (time.Duration, error) { return *e.skew, nil }}
	e.requests = monitor.NewRequests(nil, clk.Now)
	e.inc = &incidents.Service{DB: db, Now: clk.Now}
	e.hooks = &hookServer{key: []byte("0123456789abcdef0123456789abcdef")}
	e.hooks.srv = httptest.NewServer(e.hooks)
	t.Cleanup(e.hooks.srv.Close)
	e.sink = smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSNone})
	m := config.DefaultMonitor()
	m.VolumeMin, m.ScheduleMin = 50, 20
	policy := func(ctx context.Context, id string) (config.Policy, error) {
		if id == "" {
			return config.DefaultPolicy(), nil
		}
		return ts.Policy(ctx, id)
	}
	src := alerts.Sources{Backups: e.backups, Cert: e.cert, Clock: e.clockChk, Incidents: e.inc, Latency: e.requests, Policy: policy}
	e.engine = &alerts.Engine{DB: db, Rules: alerts.BuiltinRules(db, m, src), Now: clk.Now,
		Notifiers: []alerts.Notifier{&alerts.OperatorNotifier{
			Email: &notify.Email{Addr: e.sink.Addr(), From: "relais@relais.test"}, To: []string{"ops@relais.test"},
			Webhook: &notify.Webhook{Key: e.hooks.key}, WebhookURL: e.hooks.srv.URL}}}
	// Backups healthy at the start: the backup rules are quiet.
	e.backups.set(func(s *monitor.BackupStatus) {
		*s = monitor.BackupStatus{Configured: true, LastBackup: clk.Now(), LastVerify: clk.Now(), VerifyOK: true, LastRestoreTest: clk.Now(), RestoreOK: true}
	})
	if _, err := e.clockChk.Check(ctx); err != nil {
		t.Fatal(err)
	}
	e.fresh = true
	return e
}

// firing evaluates once and returns the firing alerts of a rule, as "tenant|key".
func (e *env) eval(t *testing.T) alerts.Result {
	t.Helper()
	res, err := e.engine.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for r, err := range res.Errors {
		t.Fatalf("rule %s: %v", r, err)
	}
	return res
}

func (e *env) firing(t *testing.T, rule string) []string {
	t.Helper()
	list, err := alerts.List(context.Background(), e.db, "", true, alerts.Filter{State: alerts.StateFiring, Rule: rule, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.TenantID+"|"+a.Key)
	}
	sort.Strings(out)
	return out
}

func (e *env) expect(t *testing.T, rule string, want ...string) {
	t.Helper()
	e.eval(t)
	got := e.firing(t, rule)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s at %s: firing %v, want %v", rule, e.clk.Now().Format(time.RFC3339), got, want)
	}
}

// msg inserts a router message row as the router writes it (state and
// timestamps only matter to the rules).
func (e *env) msgs(t *testing.T, tenant string, n int, channel, campaign, state string, accepted, due time.Time, sent *time.Time) {
	t.Helper()
	ctx := context.Background()
	err := e.db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
		for i := 0; i < n; i++ {
			var camp any
			if campaign != "" {
				camp = campaign
			}
			var s any
			if sent != nil {
				s = store.Micros(*sent)
			}
			e.seq++
			id := fmt.Sprintf("m-%d", e.seq)
			if _, err := tx.Exec(ctx, `INSERT INTO messages (tenant_id, id, shard, campaign_id, channel, recipient_enc, state, due_at, accepted_at, sent_at, updated_at)
				VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)`, id, camp, channel, []byte{1}, state,
				store.Micros(due), store.Micros(accepted), s, store.Micros(accepted)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func start() time.Time { return time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC) } // a Monday

func run(t *testing.T, fn func(t *testing.T, e *env)) {
	clk := &fakeClock{t: start()}
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		clk.Set(start())
		fn(t, setup(t, db, clk))
	})
}

// TestEachBuiltinAlertQuietFiringResolved drives every built-in rule from
// quiet to firing to resolved with the fake clock (AVL-5, LOG-5, BAK-5,
// BAK-6, ACC-4, INC-2, AVL-2).
func TestEachBuiltinAlertQuietFiringResolved(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, r := range alerts.RuleNames {
			e.expect(t, r) // everything quiet at the start
		}

		t.Run("volume", func(t *testing.T) {
			now := e.clk.Now()
			hour := now.Truncate(time.Hour).Add(-time.Hour) // 09:00, the last complete hour
			e.msgs(t, e.acme.ID, 20, "email", "", "queued", hour.Add(-7*24*time.Hour+time.Minute), hour.Add(-7*24*time.Hour), nil)
			e.msgs(t, e.acme.ID, 60, "email", "", "queued", hour.Add(5*time.Minute), hour.Add(time.Hour*24*30), nil)
			e.msgs(t, e.globex.ID, 60, "email", "", "queued", hour.Add(-7*24*time.Hour+time.Minute), hour.Add(time.Hour*24*30), nil)
			e.msgs(t, e.globex.ID, 50, "email", "", "queued", hour.Add(5*time.Minute), hour.Add(time.Hour*24*30), nil)
			// acme: 60 against 20 (3x is the limit: 60 is not above it).
			e.expect(t, alerts.RuleVolume)
			e.msgs(t, e.acme.ID, 1, "sms", "", "queued", hour.Add(6*time.Minute), hour.Add(time.Hour*24*30), nil)
			e.expect(t, alerts.RuleVolume, e.acme.ID+"|volume")
			e.advance(t, time.Hour) // the next hour: quiet in both weeks
			e.expect(t, alerts.RuleVolume)
		})

		t.Run("schedule", func(t *testing.T) {
			// 40 SMS scheduled in the last hour, 10 sent: fewer than planned.
			now := e.clk.Now()
			due := now.Add(-30 * time.Minute)
			sent := now.Add(-20 * time.Minute)
			e.msgs(t, e.globex.ID, 30, "sms", "", "queued", due.Add(-48*time.Hour), due, nil)
			e.msgs(t, e.globex.ID, 10, "sms", "", "sent", due.Add(-48*time.Hour), due, &sent)
			e.expect(t, alerts.RuleSchedule, e.globex.ID+"|volume/sms")
			// A send for a campaign that does not exist: outside a campaign.
			e.msgs(t, e.acme.ID, 1, "email", "ghost-campaign", "sent", due.Add(-48*time.Hour), due.Add(-48*time.Hour), &sent)
			e.expect(t, alerts.RuleSchedule, e.globex.ID+"|volume/sms", e.acme.ID+"|outside/email")
			e.advance(t, 2*time.Hour)
			e.expect(t, alerts.RuleSchedule)
		})

		t.Run("failed_logins", func(t *testing.T) {
			// Failures as identity records them (AUTH-3): category auth,
			// details outcome=failure with the username as typed.
			fail := func(tenant, user, username, ip string, n int) {
				t.Helper()
				err := e.db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
					for i := 0; i < n; i++ {
						if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "auth.login", ObjectType: "user", ObjectID: user,
							Actor: audit.Actor{Type: audit.ActorUser, ID: user}, IP: ip,
							Details: map[string]any{"outcome": "failure", "reason": "bad_password", "method": "password", "username": username}}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			fail(e.acme.ID, "u1", "jane@acme.test", "192.0.2.1", 9)
			e.expect(t, alerts.RuleFailedLogins)
			fail(e.acme.ID, "u1", "jane@acme.test", "192.0.2.1", 1)
			e.expect(t, alerts.RuleFailedLogins, e.acme.ID+"|account/user:u1")
			for i := 0; i < 4; i++ { // unknown accounts, from other addresses
				fail(e.globex.ID, "", fmt.Sprintf("guess%d@globex.test", i), fmt.Sprintf("198.51.100.%d", i), 1)
			}
			fail(e.globex.ID, "", "guess0@globex.test", "203.0.113.9", 0)
			e.expect(t, alerts.RuleFailedLogins, e.acme.ID+"|account/user:u1")
			fail(e.globex.ID, "", "guess4@globex.test", "203.0.113.9", 1) // the fifth account
			e.expect(t, alerts.RuleFailedLogins, e.acme.ID+"|account/user:u1", e.globex.ID+"|accounts")
			fail(e.globex.ID, "", "x@globex.test", "192.0.2.1", 10) // 20 from 192.0.2.1 across tenants
			e.expect(t, alerts.RuleFailedLogins, e.acme.ID+"|account/user:u1", e.globex.ID+"|accounts", e.globex.ID+"|account/"+accountName("x@globex.test"), "|ip/192.0.2.1")
			e.advance(t, 16*time.Minute)
			e.expect(t, alerts.RuleFailedLogins)
		})

		t.Run("admin_grant", func(t *testing.T) {
			grant := func(actor audit.Actor, users []string) int64 {
				t.Helper()
				var seq int64
				err := e.db.Tenant(e.acme.ID).Tx(ctx, func(tx *store.Tx) error {
					rec, err := audit.AppendSequenced(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "user.role.grant", ObjectType: "user", ObjectID: users[0],
						Actor: actor, Details: map[string]any{"role": "admins", "alert": "admin_grant", "permissions": []string{"roles:admin"}, "users": users}})
					seq = rec.Seq
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return seq
			}
			grant(audit.Actor{Type: audit.ActorUser, ID: "u-chief"}, []string{"u2"}) // the expected path
			e.expect(t, alerts.RuleAdminGrant)
			self := grant(audit.Actor{Type: audit.ActorUser, ID: "u3"}, []string{"u3"})
			sys := grant(audit.Actor{Type: audit.ActorSystem, ID: "sso"}, []string{"u4"})
			e.expect(t, alerts.RuleAdminGrant, fmt.Sprintf("%s|audit/%d", e.acme.ID, self), fmt.Sprintf("%s|audit/%d", e.acme.ID, sys))
			e.advance(t, 25*time.Hour)
			e.expect(t, alerts.RuleAdminGrant)
		})

		t.Run("backup_verification_and_restore_test", func(t *testing.T) {
			e.fresh = false
			defer func() { e.fresh = true }()
			e.backups.set(func(s *monitor.BackupStatus) { s.VerifyOK, s.VerifyDetail = false, "object 3: authentication failed" })
			e.expect(t, alerts.RuleBackupVerify, "|failed")
			e.backups.set(func(s *monitor.BackupStatus) { s.VerifyOK, s.LastVerify = true, e.clk.Now() })
			e.expect(t, alerts.RuleBackupVerify)
			e.advance(t, 27*time.Hour) // daily verification not run: overdue
			e.renewOthers(t)
			e.expect(t, alerts.RuleBackupVerify, "|overdue")
			e.backups.set(func(s *monitor.BackupStatus) { s.LastVerify = e.clk.Now() })
			e.expect(t, alerts.RuleBackupVerify)
			e.backups.set(func(s *monitor.BackupStatus) { s.RestoreOK = false })
			e.expect(t, alerts.RuleRestoreTest, "|failed")
			e.backups.set(func(s *monitor.BackupStatus) { s.RestoreOK = true })
			e.expect(t, alerts.RuleRestoreTest)
			e.advance(t, 70*24*time.Hour)
			e.renewOthers(t)
			e.backups.set(func(s *monitor.BackupStatus) { s.LastVerify = e.clk.Now() })
			e.expect(t, alerts.RuleRestoreTest, "|overdue")
			e.backups.set(func(s *monitor.BackupStatus) { s.LastRestoreTest = e.clk.Now() })
			e.expect(t, alerts.RuleRestoreTest)
		})

		t.Run("certificate", func(t *testing.T) {
			e.fresh = false
			defer func() { e.fresh = true }()
			now := e.clk.Now()
			e.cert.mu.Lock()
			e.cert.notAfter = now.Add(30 * 24 * time.Hour)
			e.cert.mu.Unlock()
			e.expect(t, alerts.RuleCertificate)
			e.advance(t, 10*24*time.Hour) // 20 days left, under cert_warn (21d)
			e.expect(t, alerts.RuleCertificate, "|serving")
			e.cert.mu.Lock()
			e.cert.notAfter = e.clk.Now().Add(90 * 24 * time.Hour) // renewed
			e.cert.mu.Unlock()
			e.expect(t, alerts.RuleCertificate)
		})

		t.Run("clock_offset", func(t *testing.T) {
			e.fresh = false
			defer func() { e.fresh = true }()
			*e.skew = 3 * time.Second
			if _, err := e.clockChk.Check(ctx); err != nil {
				t.Fatal(err)
			}
			e.expect(t, alerts.RuleClock, "|offset")
			*e.skew = 10 * time.Millisecond
			if _, err := e.clockChk.Check(ctx); err != nil {
				t.Fatal(err)
			}
			e.expect(t, alerts.RuleClock)
			e.advance(t, time.Hour) // no measurement for an hour: stale
			e.expect(t, alerts.RuleClock, "|unmeasured")
			if _, err := e.clockChk.Check(ctx); err != nil {
				t.Fatal(err)
			}
			e.expect(t, alerts.RuleClock)
			if _, err := e.clockChk.Check(ctx); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("incident_notification_overdue", func(t *testing.T) {
			inc, err := e.inc.Create(ctx, incidents.New{Category: "data_breach", Criticality: "high", Title: "Export bucket exposed",
				DetectedAt: e.clk.Now(), Tenants: []string{"acme", "globex"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.inc.Notify(ctx, inc.Number, incidents.NotifyOptions{TenantID: "globex", Manual: "phoned the DPO"}); err != nil {
				t.Fatal(err)
			}
			e.advance(t, 47*time.Hour)
			e.expect(t, alerts.RuleIncidentOverdue)
			e.advance(t, 2*time.Hour) // 49 h after detection, acme not notified
			e.expect(t, alerts.RuleIncidentOverdue, "|"+inc.Ref+"/"+e.acme.ID)
			if _, err := e.inc.Notify(ctx, inc.Number, incidents.NotifyOptions{Manual: "registered letter"}); err != nil {
				t.Fatal(err)
			}
			e.expect(t, alerts.RuleIncidentOverdue)
		})

		t.Run("latency_threshold", func(t *testing.T) {
			for i := 0; i < 30; i++ {
				e.requests.Observe(e.acme.ID, "GET /api/v1/contacts", 200, 2*time.Second)
			}
			e.expect(t, alerts.RuleLatency, e.acme.ID+"|p95")
			// The tenant's own threshold (AVL-2): 5 s clears it.
			if _, err := e.tenants.SetPolicy(ctx, e.acme.ID, json.RawMessage(`{"monitor":{"latency_p95":"5s"}}`)); err != nil {
				t.Fatal(err)
			}
			e.expect(t, alerts.RuleLatency)
		})

		// Every transition was notified once by email and by signed webhook.
		for _, r := range []string{alerts.RuleVolume, alerts.RuleCertificate, alerts.RuleIncidentOverdue} {
			if got := e.hooks.kinds(r); strings.Join(got, ",") != "firing,resolved" {
				t.Errorf("%s webhook events %v", r, got)
			}
		}
		if e.hooks.bad != 0 {
			t.Errorf("%d webhook deliveries with a bad signature", e.hooks.bad)
		}
		var subjects []string
		for _, m := range e.sink.Messages() {
			subjects = append(subjects, m.Header.Get("Subject"))
		}
		joined := strings.Join(subjects, "\n")
		if !strings.Contains(joined, "[relais FIRING] clock_offset") || !strings.Contains(joined, "[relais RESOLVED] clock_offset") {
			t.Errorf("emails:\n%s", joined)
		}
		// Fired and resolved alerts are in the audit trails.
		var actions []string
		_ = e.db.Tenant(e.acme.ID).Tx(ctx, func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 0, 1000)
			for _, r := range recs {
				actions = append(actions, r.Action)
			}
			return err
		})
		if !strings.Contains(strings.Join(actions, ","), "alert.fire") || !strings.Contains(strings.Join(actions, ","), "alert.resolve") {
			t.Errorf("acme's trail lacks the alert events: %v", actions)
		}
	})
}

func accountName(username string) string {
	return alerts.AlertsAccountKeyForTest("", username)
}

// TestDedupAndSilence: a condition that persists notifies once; a silence
// mutes the notification but the alert is still recorded.
func TestDedupAndSilence(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		*e.skew = 2 * time.Second
		if _, err := e.clockChk.Check(ctx); err != nil {
			t.Fatal(err)
		}
		first := e.eval(t)
		again := e.eval(t)
		if len(first.Fired) != 1 || len(again.Fired) != 0 {
			t.Fatalf("fired %d then %d", len(first.Fired), len(again.Fired))
		}
		if got := e.hooks.kinds(alerts.RuleClock); len(got) != 1 {
			t.Fatalf("notified %v", got)
		}
		// Silence the certificate rule, then let the certificate expire.
		if _, err := alerts.AddSilence(ctx, e.db, alerts.Silence{Rule: alerts.RuleCertificate, Reason: "renewal in progress",
			EndsAt: e.clk.Now().Add(100 * 24 * time.Hour)}, alerts.RuleNames, e.clk.Now()); err == nil {
			t.Fatal("a 100-day silence was accepted")
		}
		if _, err := alerts.AddSilence(ctx, e.db, alerts.Silence{Rule: "nope", Reason: "x", EndsAt: e.clk.Now().Add(time.Hour)}, alerts.RuleNames, e.clk.Now()); err == nil {
			t.Fatal("a silence of an unknown rule was accepted")
		}
		if _, err := alerts.AddSilence(ctx, e.db, alerts.Silence{Rule: alerts.RuleCertificate, Reason: "renewal in progress",
			EndsAt: e.clk.Now().Add(20 * 24 * time.Hour)}, alerts.RuleNames, e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		e.cert.mu.Lock()
		e.cert.notAfter = e.clk.Now().Add(24 * time.Hour)
		e.cert.mu.Unlock()
		res := e.eval(t)
		var silenced bool
		for _, a := range res.Fired {
			silenced = silenced || (a.Rule == alerts.RuleCertificate && a.Silenced)
		}
		if !silenced {
			t.Fatalf("certificate alert not fired silenced: %+v", res.Fired)
		}
		if got := e.hooks.kinds(alerts.RuleCertificate); len(got) != 0 {
			t.Fatalf("a silenced alert was notified: %v", got)
		}
		list, err := alerts.List(ctx, e.db, "", false, alerts.Filter{Rule: alerts.RuleCertificate})
		if err != nil || len(list) != 1 || !list[0].Silenced {
			t.Fatalf("stored %+v %v", list, err)
		}
	})
}

// TestTwoNodesNotifyOnce: two engines (two nodes) over one store, each
// evaluating concurrently, fire and resolve one condition once: one row,
// one notification per transition.
func TestTwoNodesNotifyOnce(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		second := *e.engine
		*e.skew = 2 * time.Second
		if _, err := e.clockChk.Check(ctx); err != nil {
			t.Fatal(err)
		}
		evalBoth := func() {
			var wg sync.WaitGroup
			for _, eng := range []*alerts.Engine{e.engine, &second} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// On PostgreSQL the loser may also fail its transaction
					// on a serialisation conflict; it retries at the next tick.
					_, _ = eng.Evaluate(ctx)
				}()
			}
			wg.Wait()
		}
		evalBoth()
		evalBoth()
		*e.skew = 0
		if _, err := e.clockChk.Check(ctx); err != nil {
			t.Fatal(err)
		}
		evalBoth()
		evalBoth()
		if got := e.hooks.kinds(alerts.RuleClock); strings.Join(got, ",") != "firing,resolved" {
			t.Fatalf("notifications %v", got)
		}
		list, err := alerts.List(ctx, e.db, "", true, alerts.Filter{Rule: alerts.RuleClock})
		if err != nil || len(list) != 1 || list[0].State != alerts.StateResolved {
			t.Fatalf("alerts %+v %v", list, err)
		}
	})
}
