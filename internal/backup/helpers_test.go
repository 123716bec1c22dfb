package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv("RELAIS_TEST_RESTORE_CHILD") != "" {
		// The restoring process TestRestoreNewStoreKilled kills: SQLite
		// only, no PostgreSQL server of its own to leave behind.
		os.Exit(m.Run())
	}
	os.Exit(storetest.Main(m))
}

var bg = context.Background()

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)} }

// env is one store with a populated tenant (acme) and another (beta).
type env struct {
	db       *store.DB
	mk       keys.MasterKey
	clk      *clock
	svc      *Service
	contacts *contacts.Service
	acme     tenants.Tenant
	beta     tenants.Tenant
}

func newMaster(t *testing.T) keys.MasterKey {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func service(db *store.DB, mk keys.MasterKey, clk *clock) *Service {
	return &Service{DB: db, Master: mk, Keyring: tenants.NewKeyring(db, mk, 0), Now: clk.Now, ChunkBytes: 4096}
}

// setup creates two tenants in db; acme gets contacts (with personal
// fields), consents, a list, a blocklist entry, message events and a
// signed audit checkpoint.
func setup(t *testing.T, db *store.DB, mk keys.MasterKey, clk *clock, contactsN int) *env {
	t.Helper()
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	acme, err := ts.Create(bg, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	beta, err := ts.Create(bg, "Beta", "beta")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, mk: mk, clk: clk, svc: service(db, mk, clk), acme: acme, beta: beta,
		contacts: &contacts.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0), Now: clk.Now}}
	if contactsN > 0 {
		if _, err := e.contacts.Seed(bg, acme.ID, contactsN, 7, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.contacts.Seed(bg, beta.ID, 5, 8, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.contacts.Create(bg, acme.ID, contacts.NewContact{Email: "jeanne.secret@example.net", FirstName: "Jeanne",
		LastName: "Secretname", Phone: "+33612345678",
		Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, SourceIP: "203.0.113.9"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.contacts.CreateList(bg, acme.ID, "newsletter", "weekly"); err != nil {
		t.Fatal(err)
	}
	if err := e.contacts.Block(bg, acme.ID, contacts.BlockEmail, "blocked.person@example.org", "complaint"); err != nil {
		t.Fatal(err)
	}
	if err := db.Tenant(acme.ID).Tx(bg, func(tx *store.Tx) error {
		for i := range 3 {
			if _, err := tx.Exec(bg, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, 'accepted', '')`,
				"m"+string(rune('a'+i)), int64(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := (&audit.Service{DB: db, Master: mk}).Checkpoint(bg, acme.ID, "test"); err != nil {
		t.Fatal(err)
	}
	return e
}

// dump is every backed-up row of a tenant, by table, in the neutral
// encoding, sorted.
func dump(t *testing.T, db *store.DB, tenantID string) map[string][]string {
	t.Helper()
	tables, err := loadSchema(bg, db)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		if err := audit.SequenceLog(bg, tx); err != nil { // compare logs, not queues
			return err
		}
		for _, tb := range tables {
			rows, err := tx.Query(bg, `SELECT `+selectList(tb)+` FROM `+quote(tb.Name)+` WHERE tenant_id = $1`)
			if err != nil {
				return err
			}
			vals := make([]any, len(tb.Columns))
			ptrs := make([]any, len(tb.Columns))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					return err
				}
				for i, c := range tb.Columns {
					if c.Kind == kindText {
						vals[i], _ = canonicalJSON(vals[i])
					}
				}
				line, err := encodeRow(nil, tb, vals)
				if err != nil {
					return err
				}
				out[tb.Name] = append(out[tb.Name], string(line))
			}
			_ = rows.Close()
			sort.Strings(out[tb.Name])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutRestoreTrace drops what a restore adds to the tenant's own log
// (its audit event and the head that moved), for comparisons.
func withoutRestoreTrace(d map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, v := range d {
		if k == "audit_heads" {
			continue
		}
		for _, l := range v {
			if k == "audit_events" && (strings.Contains(l, `"backup.restore"`) || strings.Contains(l, `"backup.run"`) ||
				strings.Contains(l, `"backup.verify`)) {
				continue
			}
			out[k] = append(out[k], l)
		}
	}
	return out
}

func compareDumps(t *testing.T, want, got map[string][]string) {
	t.Helper()
	want, got = withoutRestoreTrace(want), withoutRestoreTrace(got)
	for k, w := range want {
		g := got[k]
		if len(w) != len(g) {
			t.Errorf("table %s: %d rows restored, want %d", k, len(g), len(w))
			continue
		}
		for i := range w {
			if w[i] != g[i] {
				t.Errorf("table %s row %d differs:\n got %s\nwant %s", k, i, g[i], w[i])
				break
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && len(g) > 0 {
			t.Errorf("table %s: %d unexpected rows", k, len(g))
		}
	}
}

func dirTarget(t *testing.T) *DirTarget { return &DirTarget{Root: t.TempDir()} }

func verifyAudit(t *testing.T, db *store.DB, mk keys.MasterKey, tenantID string) audit.Report {
	t.Helper()
	rep, err := (&audit.Service{DB: db, Master: mk}).Verify(bg, tenantID, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if !rep.OK || !rep.KeyAuthenticated || rep.Checkpoints == 0 {
		t.Fatalf("audit log does not verify after restore: %+v %+v", rep, rep.Problem)
	}
	return rep
}

// emails is n e-mail messages numbered from from: recipients
// <prefix><i>@example.net, idempotency keys <prefix>-<i>, bodies apart.
func emails(prefix string, from, n int) []router.NewMessage {
	msgs := make([]router.NewMessage, 0, n)
	for i := from; i < from+n; i++ {
		msgs = append(msgs, router.NewMessage{Channel: "email", To: fmt.Sprintf("%s%d@example.net", prefix, i), IdempotencyKey: fmt.Sprintf("%s-%d", prefix, i),
			Content: router.Content{From: "news@acme.test", Subject: "Hello", Text: fmt.Sprintf("Body %s %d", prefix, i)}})
	}
	return msgs
}

// execIn runs one statement in a transaction of the tenant.
func execIn(t *testing.T, db *store.DB, tenantID, q string, args ...any) {
	t.Helper()
	if err := db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, q, args...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
