package campaigns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// env is a tenant with the real services: contacts, templates, the router
// with an SMTP connector to an in-process SMTP server (STARTTLS, private
// certificate) opened through the connector registry, and campaigns.
type env struct {
	t        testing.TB
	db       *store.DB
	tenant   string
	keyring  *tenants.Keyring
	tenants  *tenants.Service
	contacts *contacts.Service
	tmpl     *templates.Service
	router   *router.Service
	conns    *router.Connectors
	camp     *campaigns.Service
	sink     *smtpsink.Sink
}

func newEnv(t testing.TB, db *store.DB, slug string) *env {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	tn, err := ts.Create(ctx, "Acme "+slug, slug)
	if err != nil {
		t.Fatal(err)
	}
	kr := tenants.NewKeyring(db, mk, 0)
	e := &env{t: t, db: db, tenant: tn.ID, keyring: kr, tenants: ts}
	e.contacts = &contacts.Service{DB: db, Keyring: kr}
	e.tmpl = &templates.Service{DB: db}
	e.router = &router.Service{DB: db, Keyring: kr}
	e.conns = &router.Connectors{Service: e.router, Open: registry.Open, Redact: registry.Redact}
	e.camp = &campaigns.Service{DB: db, Contacts: e.contacts, Templates: e.tmpl, Router: e.router, PublicBaseURL: "https://relais.example",
		Poll: 50 * time.Millisecond}
	return e
}

// withSink adds an SMTP connector to a fresh sink.
func (e *env) withSink(opts smtpsink.Options) *smtpsink.Sink {
	e.t.Helper()
	if opts.TLS == "" {
		opts.TLS = smtpsink.TLSStartTLS
	}
	e.sink = smtpsink.Start(e.t, opts)
	cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": e.sink.Port(), "tls": opts.TLS, "from": "news@acme.example",
		"root_cas_pem": string(e.sink.CertPEM()), "pool_size": 4})
	if _, err := e.conns.AddConnector(context.Background(), e.tenant, "mail", registry.TypeSMTP, cfg); err != nil {
		e.t.Fatal(err)
	}
	return e.sink
}

// engine runs a router engine (with the consent check before hand-off)
// and the campaigns job until the test ends.
func (e *env) run() func() {
	e.t.Helper()
	node := fmt.Sprintf("engine-%d", time.Now().UnixNano())
	sup := &campaigns.Suppressor{Contacts: e.contacts}
	eng := router.NewEngine(e.db, e.keyring, registry.Open, router.EngineOptions{Node: node, Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second,
		Suppress: sup.Check, SuppressLoad: sup.Preload})
	e.router.Wake = eng.Wake
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = eng.Run(ctx) }()
	go func() { defer wg.Done(); _ = e.camp.Run(ctx) }()
	stop := func() { cancel(); wg.Wait() }
	e.t.Cleanup(stop)
	return stop
}

// person is a synthetic contact of the test audience.
type person struct {
	email, tz string
	// consent: granted, withdrawn, pending or "" (none).
	consent string
	blocked bool
}

func (p person) eligible() bool { return p.consent == "granted" && !p.blocked }

// people makes n contacts: 70% with consent, the rest withdrawn, pending or
// without, and every 37th consenting one on the blocklist.
func people(n int) []person {
	zones := []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "", "Europe/London"}
	out := make([]person, n)
	for i := range out {
		p := person{email: fmt.Sprintf("person%05d@example.com", i), tz: zones[i%len(zones)], consent: "granted"}
		switch i % 10 {
		case 0:
			p.consent = "withdrawn"
		case 1:
			p.consent = ""
		case 2:
			p.consent = "pending"
		}
		if p.consent == "granted" && i%37 == 3 {
			p.blocked = true
		}
		out[i] = p
	}
	return out
}

// load imports the people into a new list through the contacts import
// (consent per line), blocklists those to block, and returns the list id.
func (e *env) load(ps []person, listName string) string {
	e.t.Helper()
	ctx := context.Background()
	l, err := e.contacts.CreateList(ctx, e.tenant, listName, "")
	if err != nil {
		e.t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("email,first_name,last_name,timezone,consent.email\n")
	var blocked bytes.Buffer
	blocked.WriteString("email\n")
	for i, p := range ps {
		fmt.Fprintf(&b, "%s,First%d,Last%d,%s,%s\n", p.email, i, i, p.tz, p.consent)
		if p.blocked {
			fmt.Fprintf(&blocked, "%s\n", p.email)
		}
	}
	job, err := e.contacts.Import(ctx, e.tenant, bytes.NewReader(b.Bytes()), contacts.ImportOptions{Lists: []string{l.ID}})
	if err != nil || job.Failed != 0 || job.Created+job.Updated != int64(len(ps)) {
		e.t.Fatalf("import: %+v %v", job, err)
	}
	if blocked.Len() > len("email\n") {
		job, err = e.contacts.Import(ctx, e.tenant, bytes.NewReader(blocked.Bytes()), contacts.ImportOptions{Mode: contacts.ModeBlocklist})
		if err != nil || job.Failed != 0 {
			e.t.Fatalf("blocklist import: %+v %v", job, err)
		}
	}
	return l.ID
}

// template creates an email template for campaigns.
func (e *env) template(name, html string) string {
	e.t.Helper()
	fs, err := e.camp.FieldSet(context.Background(), e.tenant)
	if err != nil {
		e.t.Fatal(err)
	}
	t, err := e.tmpl.Create(context.Background(), e.tenant, templates.Input{Name: name, Channel: templates.ChannelEmail,
		Variants: map[string]templates.Variant{"en": {Subject: "News for {{.contact.first_name}}", HTML: html}}}, fs)
	if err != nil {
		e.t.Fatal(err)
	}
	return t.ID
}

const newsHTML = `<p>Hello {{.contact.first_name}} {{.contact.last_name}},</p><p>Our news this month.</p>` +
	`<p><a href="{{.links.unsubscribe}}">Unsubscribe</a></p>`

// campaign creates a draft for the list.
func (e *env) campaign(name, templateID, listID string, sc campaigns.Schedule, throttle int) campaigns.Campaign {
	e.t.Helper()
	c, err := e.camp.Create(context.Background(), e.tenant, campaigns.Input{Name: name, Channel: "email", TemplateID: templateID,
		Audience: campaigns.Audience{ListIDs: []string{listID}}, Schedule: sc, ThrottlePerSecond: throttle})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// waitState waits for a campaign to reach a state.
func (e *env) waitState(id, state string, timeout time.Duration) campaigns.Campaign {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := e.camp.Get(context.Background(), e.tenant, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if c.State == state {
			return c
		}
		if time.Now().After(deadline) {
			r, _ := e.camp.Report(context.Background(), e.tenant, id)
			e.t.Fatalf("campaign %s is %s after %s, want %s; counts %v; progress %+v", id, c.State, timeout, state, r.Counts, c.Progress)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// received returns how many messages each envelope recipient got.
func received(s *smtpsink.Sink) map[string]int {
	out := map[string]int{}
	for _, m := range s.Messages() {
		for _, to := range m.To {
			out[strings.ToLower(to)]++
		}
	}
	return out
}

// messagesOf returns the campaign's messages per contact, from the queue.
func (e *env) messagesOf(campaignID string) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	err := e.db.Tenant(e.tenant).Tx(context.Background(), func(tx *store.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT contact_id FROM messages WHERE tenant_id = $1 AND campaign_id = $2`, campaignID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id]++
		}
		return rows.Err()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}
