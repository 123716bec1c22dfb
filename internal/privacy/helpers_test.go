package privacy_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var bg = context.Background()

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

type env struct {
	db       *store.DB
	mk       keys.MasterKey
	tenants  *tenants.Service
	keyring  *tenants.Keyring
	contacts *contacts.Service
	router   *router.Service
	audit    *audit.Service
	svc      *privacy.Service
	a, b     tenants.Tenant
	clk      *clock
}

func run(t *testing.T, fn func(t *testing.T, e *env)) {
	clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		clk.t = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
		fn(t, setup(t, db, clk))
	})
}

func setup(t *testing.T, db *store.DB, clk *clock) *env {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, mk: mk, clk: clk}
	e.tenants = &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	e.keyring = tenants.NewKeyring(db, mk, 0)
	e.contacts = &contacts.Service{DB: db, Keyring: e.keyring, Now: clk.Now}
	e.router = &router.Service{DB: db, Keyring: e.keyring}
	e.audit = &audit.Service{DB: db, Master: mk}
	// The real shredders (issue 7): erasure deletes the contact's own key,
	// destruction destroys the tenant's data keys with a shredding record.
	e.svc = &privacy.Service{DB: db, Master: mk, Keyring: e.keyring, Tenants: e.tenants, Contacts: e.contacts, Audit: e.audit, Now: clk.Now,
		ContactShredder: contacts.KeyShredder{}, KeyShredder: e.tenants}
	if e.a, err = e.tenants.Create(bg, "Acme", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.b, err = e.tenants.Create(bg, "Beta", "beta"); err != nil {
		t.Fatal(err)
	}
	return e
}

// person is a data subject with values no faker produces.
type person struct {
	email, phone, first, last, ip string
}

func people() []person {
	return []person{
		{"zebulonia.quaxworth@example.org", "+33612345678", "Zebulonia", "Quaxworth", "198.51.100.77"},
		{"ottoline.vrbanek@example.net", "+442079460123", "Ottoline", "Vrbanek", "203.0.113.9"},
		{"marzipane.olloquy@example.com", "+14155550142", "Marzipane", "Olloquy", "192.0.2.201"},
	}
}

// populate gives a tenant contacts with consents, a list, blocklist
// entries, a personal attribute and messages; it returns the contact ids.
func populate(t *testing.T, e *env, tenantID string, ps []person) []string {
	t.Helper()
	if _, err := e.contacts.DefineAttribute(bg, tenantID, contacts.AttributeDef{Key: "nickname", Type: contacts.AttrString, Personal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.contacts.DefineAttribute(bg, tenantID, contacts.AttributeDef{Key: "tier", Type: contacts.AttrString}); err != nil {
		t.Fatal(err)
	}
	list, err := e.contacts.CreateList(bg, tenantID, "Newsletter", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		c, err := e.contacts.Create(bg, tenantID, contacts.NewContact{Email: p.email, Phone: p.phone, FirstName: p.first, LastName: p.last,
			Attributes: map[string]any{"nickname": p.first + "ito", "tier": "gold"},
			Consents: []contacts.ConsentInput{
				{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, SourceIP: p.ip, Wording: "News by email"},
				{Channel: contacts.ChannelSMS, Status: contacts.ConsentGranted, SourceIP: p.ip, Wording: "News by SMS"},
			}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
		acc, err := e.router.Accept(bg, tenantID, []router.NewMessage{{Channel: "email", To: p.email, ContactID: c.ID,
			Content: router.Content{From: "news@shop.example", Subject: "Hello " + p.first, Text: "Dear " + p.first + " " + p.last + ", reply to " + p.email}}})
		if err != nil {
			t.Fatal(err)
		}
		// A stored event, as a hand-off writes (accepting writes none).
		err = e.db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, 1, 'attempt', '{"n":1}')`, acc[0].ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.contacts.AddToList(bg, tenantID, list.ID, ids...); err != nil {
		t.Fatal(err)
	}
	if err := e.contacts.Block(bg, tenantID, contacts.BlockEmail, ps[len(ps)-1].email, "asked"); err != nil {
		t.Fatal(err)
	}
	if err := e.contacts.Block(bg, tenantID, contacts.BlockEmail, "stranger.unknown@example.com", "complaint"); err != nil {
		t.Fatal(err)
	}
	return ids
}
