package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor/supervise"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// The end-to-end tests of the web interface (issue 14) drive a real
// headless Chromium (Debian's chromium package) through chromedp against
// the whole stack in process: store, identity, access, contacts,
// templates, campaigns, the router's engine and an SMTP connector to the
// SMTP sink. They skip only when Chromium is absent and CI is unset; in CI
// a missing browser fails them.

// chromiumPath finds the browser, or skips (or fails in CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("RELAIS_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: CI must install the chromium package for the browser tests")
	}
	t.Skip("chromium is not installed (and CI is unset)")
	return ""
}

// artefacts is where screenshots go: RELAIS_ARTEFACTS, or a temporary
// directory.
func artefacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RELAIS_ARTEFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

const e2ePassword = "Correct-Horse-Battery-42!"

// e2eEnv is the whole stack, served over HTTPS by httptest.
type e2eEnv struct {
	srv     *httptest.Server
	handler http.Handler
	server  *Server
	db      *store.DB
	tenant  tenants.Tenant
	id      *identity.Service
	acc     *access.Service
	cs      *contacts.Service
	camp    *campaigns.Service
	sink    *smtpsink.Sink
	priv    *privacy.Service
	sso     *sso.Service
	sftp    *sftpd.Service
	sup     *supervise.Supervisor
	offset  atomic.Int64 // the identity clock's advance, in nanoseconds
	shots   string
	browser context.Context
}

func (e *e2eEnv) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

func newE2E(t *testing.T) *e2eEnv {
	t.Helper()
	chrome := chromiumPath(t)
	e := newUIStack(t)
	e.shots = artefacts(t)
	e.startBrowser(t, chrome)
	return e
}

// newUIStack starts the whole stack on SQLite, without a browser.
func newUIStack(t *testing.T) *e2eEnv {
	t.Helper()
	return newUIStackOn(t, storetest.OpenSQLite(t, storetest.Options{}))
}

// newUIStackOn starts the whole stack on a store, without a browser.
func newUIStackOn(t *testing.T, db *store.DB) *e2eEnv {
	t.Helper()
	ctx := context.Background()
	e := &e2eEnv{db: db}
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	pol := config.DefaultPolicy()
	ts := &tenants.Service{DB: e.db, Master: mk, Defaults: pol}
	if e.tenant, err = ts.Create(ctx, "Acme Outdoor", "acme"); err != nil {
		t.Fatal(err)
	}
	kr := tenants.NewKeyring(e.db, mk, 0)
	e.acc = &access.Service{DB: e.db}
	e.id = &identity.Service{DB: e.db, Tenants: ts, Keyring: kr, Perms: access.Source{S: e.acc}, Issuer: "Relais", Now: e.now}
	e.cs = &contacts.Service{DB: e.db, Keyring: kr}
	tmpl := &templates.Service{DB: e.db}
	rs := &router.Service{DB: e.db, Keyring: kr}
	conns := &router.Connectors{Service: rs, Open: registry.Open, Redact: registry.Redact}
	e.camp = &campaigns.Service{DB: e.db, Contacts: e.cs, Templates: tmpl, Router: rs, PublicBaseURL: "https://relais.example", Poll: 50 * time.Millisecond}

	// The SMTP connector, to the sink.
	e.sink = smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSStartTLS})
	cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": e.sink.Port(), "tls": smtpsink.TLSStartTLS, "from": "news@acme.example",
		"root_cas_pem": string(e.sink.CertPEM()), "pool_size": 2})
	if _, err := conns.AddConnector(ctx, e.tenant.ID, "mail", registry.TypeSMTP, cfg); err != nil {
		t.Fatal(err)
	}
	// The router's engine and the campaigns job.
	sup := &campaigns.Suppressor{Contacts: e.cs}
	eng := router.NewEngine(e.db, kr, registry.Open, router.EngineOptions{Node: "e2e", Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second, Suppress: sup.Check})
	rs.Wake = eng.Wake
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = eng.Run(runCtx) }()
	go func() { defer wg.Done(); _ = e.camp.Run(runCtx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	// Privacy, single sign-on, SFTP accounts and supervision, as app.Open
	// builds them.
	e.priv = &privacy.Service{DB: e.db, Master: mk, Keyring: kr, Tenants: ts, Contacts: e.cs, Audit: &audit.Service{DB: e.db, Master: mk}}
	e.sso = &sso.Service{DB: e.db, Tenants: ts, Keyring: kr, Identity: e.id, Access: e.acc}
	e.id.PasswordLogin = e.sso.PasswordLogin
	e.sftp = &sftpd.Service{DB: e.db, Keyring: kr, Tenants: ts, Contacts: e.cs, Blobs: sftpd.DirBlobs{Root: filepath.Join(t.TempDir(), "sftp")}, Config: config.Default().SFTP}
	mcfg := config.Default()
	mcfg.DataDir = t.TempDir()
	if e.sup, err = supervise.New(supervise.Options{DB: e.db, Config: mcfg, Tenants: ts, Master: mk, Version: "e2e"}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{DB: e.db, Tenants: ts, Identity: e.id, Access: e.acc, Router: rs, Connectors: conns, Contacts: e.cs, Campaigns: e.camp, Templates: tmpl,
		Privacy: e.priv, SSO: e.sso, SFTP: e.sftp, Monitor: e.sup, ShutdownTimeout: time.Second, Version: "e2e"})
	e.server, e.handler = s, s.Handler()
	e.srv = httptest.NewTLSServer(e.handler)
	t.Cleanup(e.srv.Close)
	return e
}

// startBrowser starts Chromium for the tests.
func (e *e2eEnv) startBrowser(t *testing.T, chrome string) {
	t.Helper()
	ctx := context.Background()

	// The browser: Debian's chromium, headless, with a throwaway profile.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		// httptest's certificate is its own; the test trusts it.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	e.browser = bctx
}

// run runs browser steps with a time limit.
func (e *e2eEnv) run(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.browser, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(e.browser, chromedp.Location())
		body, _ := chromedp.Run(e.browser, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, body)
	}
}

// text reads an element's text.
func (e *e2eEnv) text(t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.browser, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		loc, _ := chromedp.Run(e.browser, chromedp.Location())
		t.Fatalf("read %s: %v (at %s)", sel, err, loc)
	}
	return strings.TrimSpace(s)
}

func (e *e2eEnv) location(t *testing.T) string {
	t.Helper()
	loc, err := chromedp.Run(e.browser, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(loc, e.srv.URL)
}

// shot saves a full-page PNG screenshot named name.png.
func (e *e2eEnv) shot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.browser, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(e.shots, name+".png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor reloads the page until the text of sel satisfies ok.
func (e *e2eEnv) waitFor(t *testing.T, what, path, sel string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		e.run(t, "open "+path, chromedp.Navigate(e.srv.URL+path))
		ctx, cancel := context.WithTimeout(e.browser, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			last = strings.TrimSpace(s)
			if ok(last) {
				return last
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s: %s never satisfied the test; last %q", what, sel, last)
	return ""
}

// user creates an enrolled user with a role.
func (e *e2eEnv) user(t *testing.T, email, name, role string) identity.User {
	t.Helper()
	ctx := context.Background()
	u, tok, err := e.id.CreateUser(ctx, e.tenant.ID, identity.NewUser{Email: email, Name: name, Privileged: role == "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.Enrol(ctx, tok, e2ePassword); err != nil {
		t.Fatal(err)
	}
	if err := e.acc.GrantUserRole(ctx, e.tenant.ID, access.Actor{Operator: true}, u.ID, role); err != nil {
		t.Fatal(err)
	}
	return u
}

// signIn fills the sign-in form.
func (e *e2eEnv) signIn(t *testing.T, email string) {
	t.Helper()
	e.run(t, "sign-in form",
		chromedp.Navigate(e.srv.URL+"/login"),
		chromedp.SendKeys(chromedp.ID("tenant"), "acme"),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), e2ePassword),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitNotPresent(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS("h1")),
	)
}

func (e *e2eEnv) signOut(t *testing.T) {
	t.Helper()
	e.run(t, "sign out", chromedp.Navigate(e.srv.URL+"/account/sessions"), chromedp.Submit(chromedp.CSS(`.account-menu form[action="/logout"] button`), chromedp.NodeReady),
		chromedp.WaitVisible(chromedp.ID("tenant")))
}

// TestBrowserEndToEnd: in a real browser, an administrator enrols an
// authenticator app (QR code, recovery codes), signs in with a TOTP code,
// imports a CSV file and sees its counts and error report, creates a
// template and a campaign, sends it to the SMTP sink and sees its report
// with its chart; a viewer gets the 403 page on an administration page; a
// form posted from another site is refused. Screenshots of the main pages
// are saved (RELAIS_ARTEFACTS).
func TestBrowserEndToEnd(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	e.user(t, "alice@acme.example", "Alice Moreau", "admin")
	e.user(t, "victor@acme.example", "Victor Viewer", "viewer")
	// A 5-minute idle timeout, for the inactivity warning at the end.
	if _, err := e.id.Tenants.SetPolicy(ctx, e.tenant.ID, []byte(`{"session":{"idle_timeout":"5m"}}`)); err != nil {
		t.Fatal(err)
	}
	news, err := e.cs.CreateList(ctx, e.tenant.ID, "Newsletter", "Monthly news")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CreateSegment(ctx, e.tenant.ID, "French speakers", "", `locale = "fr"`); err != nil {
		t.Fatal(err)
	}

	// 1. Sign in, enrol an authenticator app.
	e.run(t, "sign-in page", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("tenant")))
	e.shot(t, "01-sign-in")
	e.signIn(t, "alice@acme.example")
	if got := e.text(t, "h1"); !strings.Contains(got, "Welcome, Alice") {
		t.Fatalf("after sign-in: %q", got)
	}
	e.run(t, "TOTP set-up", chromedp.Navigate(e.srv.URL+"/account/totp"), chromedp.Click(chromedp.CSS(`form[action="/account/totp"] button`)),
		chromedp.WaitVisible(chromedp.CSS("img.qr")))
	e.shot(t, "02-totp-enrolment")
	secret := e.text(t, "#totp-secret")
	code, err := totp.GenerateCode(secret, e.now())
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, "TOTP confirm", chromedp.SendKeys(chromedp.ID("code"), code), chromedp.Submit(chromedp.ID("code")), chromedp.WaitVisible(chromedp.CSS("ul.codes")))
	if n := strings.Count(e.text(t, "ul.codes"), "\n") + 1; n != 10 {
		t.Errorf("recovery codes shown: %d, want 10", n)
	}
	e.signOut(t)

	// 2. Sign in again: password, then a TOTP code (of the next time step:
	// a code is accepted once).
	e.offset.Add(int64(30 * time.Second))
	e.signIn(t, "alice@acme.example")
	if got := e.text(t, "h1"); got != "Second factor" {
		t.Fatalf("no second factor asked: %q", got)
	}
	e.shot(t, "03-second-factor")
	code, _ = totp.GenerateCode(secret, e.now())
	e.run(t, "TOTP sign-in", chromedp.SendKeys(chromedp.ID("code"), code), chromedp.Submit(chromedp.ID("code")), chromedp.WaitVisible(chromedp.CSS(".tiles")))
	if got := e.text(t, "h1"); !strings.Contains(got, "Welcome, Alice") {
		t.Fatalf("after the second factor: %q", got)
	}

	// 3. Import a CSV file: 5 good lines, 2 bad ones.
	csvPath := filepath.Join(t.TempDir(), "customers.csv")
	csv := "email,first_name,last_name,locale,phone\n" +
		"ana.martin@example.com,Ana,Martin,fr,+33612345678\n" +
		"ben.okafor@example.com,Ben,Okafor,en,\n" +
		"not-an-address,Bad,Email,en,\n" +
		"chloe.dubois@example.com,Chloé,Dubois,fr,+33698765432\n" +
		"dev.patel@example.com,Dev,Patel,en,\n" +
		"eve@example.com,Eve,Phone,en,12\n" +
		"farah.haddad@example.com,Farah,Haddad,fr,\n"
	if err := os.WriteFile(csvPath, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	e.run(t, "import form", chromedp.Navigate(e.srv.URL+"/contacts/import"),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{csvPath}),
		chromedp.SetValue(chromedp.ID("list"), news.ID),
		chromedp.SetValue(chromedp.ID("consent"), "email"),
	)
	e.shot(t, "04-import-form")
	e.run(t, "import", chromedp.Submit(chromedp.ID("file")), chromedp.WaitVisible(chromedp.ID("count-created")))
	jobPath := e.location(t)
	if !strings.HasPrefix(jobPath, "/contacts/imports/") {
		t.Fatalf("import went to %s", jobPath)
	}
	e.waitFor(t, "import completes", jobPath, ".card .badge", func(s string) bool { return s == "completed" })
	if c, f := e.text(t, "#count-created"), e.text(t, "#count-failed"); c != "5" || f != "2" {
		t.Fatalf("import counts: created %s, errors %s; want 5 and 2", c, f)
	}
	report := e.text(t, "#import-errors")
	for _, want := range []string{"4", "email", "7", "phone"} {
		if !strings.Contains(report, want) {
			t.Errorf("error report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "not-an-address") {
		t.Error("the error report shows a value of the file")
	}
	e.shot(t, "05-import-report")
	e.run(t, "lists", chromedp.Navigate(e.srv.URL+"/lists"), chromedp.WaitVisible(chromedp.CSS("table")))
	if got := e.text(t, ".card table tbody tr td.num"); got != "5" {
		t.Errorf("Newsletter list count: %q, want 5", got)
	}
	e.shot(t, "06-lists")
	e.run(t, "contact search", chromedp.Navigate(e.srv.URL+"/contacts?q=chloe.dubois%40example.com"), chromedp.WaitVisible(chromedp.CSS("tbody tr")))
	e.run(t, "contact page", chromedp.Click(chromedp.CSS("tbody tr a")), chromedp.WaitVisible(chromedp.ID("first_name")))
	if got := e.text(t, "h1"); got != "Chloé Dubois" {
		t.Errorf("contact found by the blind index: %q", got)
	}
	e.shot(t, "07-contact")

	// 4. A template, with its preview.
	e.run(t, "new template", chromedp.Navigate(e.srv.URL+"/templates/new"),
		chromedp.SendKeys(chromedp.ID("t-name"), "Spring news"),
		chromedp.SendKeys(chromedp.ID("t-subject"), "Hello {{.contact.first_name}}, spring is here"),
		chromedp.SetValue(chromedp.ID("t-html"), `<h1 style="color:#0b5cad">Spring collection</h1><p>Hello {{.contact.first_name}}, our new tents are in.</p><p><a href="{{.links.unsubscribe}}">Unsubscribe</a></p>`),
		chromedp.Submit(chromedp.ID("t-name")),
		chromedp.WaitVisible(chromedp.ID("subject-preview")),
	)
	if got := e.text(t, "#subject-preview"); got != "Hello Ana, spring is here" {
		t.Errorf("subject preview: %q", got)
	}
	time.Sleep(500 * time.Millisecond) // the preview frames load
	e.shot(t, "08-template")

	// 5. A campaign to the list, sent now.
	e.run(t, "new campaign", chromedp.Navigate(e.srv.URL+"/campaigns/new"),
		chromedp.SendKeys(chromedp.ID("c-name"), "Spring launch"),
		chromedp.SetValue(chromedp.ID("c-template"), tplIDByName(t, e, "Spring news")),
		chromedp.Click(chromedp.CSS(`input[name="list"][value="`+news.ID+`"]`)),
		chromedp.Submit(chromedp.ID("c-name")),
		chromedp.WaitVisible(chromedp.ID("schedule")),
	)
	if got := e.text(t, ".notice strong"); got != "5" {
		t.Errorf("eligible audience: %q, want 5", got)
	}
	e.shot(t, "09-campaign-draft")
	// The draft is edited before it is scheduled: the form comes back
	// filled in (name, the list still ticked), the new name is saved.
	draftPath, _, _ := strings.Cut(e.location(t), "?")
	e.run(t, "edit draft", chromedp.Navigate(e.srv.URL+draftPath+"/edit"), chromedp.WaitVisible(chromedp.ID("c-name")))
	name, err := chromedp.Run(e.browser, chromedp.Value(chromedp.ID("c-name")))
	if err != nil {
		t.Fatal(err)
	}
	ticked, err := chromedp.Run(e.browser, chromedp.JavascriptAttribute[bool](chromedp.CSS(`input[name="list"][value="`+news.ID+`"]`), "checked"))
	if err != nil {
		t.Fatal(err)
	}
	if name != "Spring launch" || !ticked {
		t.Errorf("the edit form: name %q, list ticked %v", name, ticked)
	}
	e.run(t, "save draft", chromedp.SetValue(chromedp.ID("c-name"), "Spring launch 2026"),
		chromedp.Submit(chromedp.ID("c-name")), chromedp.WaitVisible(chromedp.ID("schedule")))
	if got := e.text(t, ".pagehead h1"); got != "Spring launch 2026" {
		t.Errorf("the draft after its edit is named %q", got)
	}
	if got, _, _ := strings.Cut(e.location(t), "?"); got != draftPath {
		t.Errorf("after saving the draft the browser is at %q, want %q", got, draftPath)
	}
	e.run(t, "schedule", chromedp.Click(chromedp.ID("schedule")), chromedp.WaitVisible(chromedp.ID("sendbar")))
	campPath := e.location(t)
	if err := e.sink.WaitFor(5, 30*time.Second); err != nil {
		t.Fatalf("the SMTP sink did not receive the 5 messages: %v", err)
	}
	e.waitFor(t, "campaign done", campPath, ".pagehead .badge", func(s string) bool { return s == "done" })
	if got := e.text(t, "#r-handed"); got != "5" {
		t.Errorf("handed off: %q, want 5", got)
	}
	if n, err := chromedp.Run(e.browser, chromedp.Nodes(chromedp.CSSAll("svg.chart polyline"))); err != nil || len(n) != 4 {
		t.Errorf("report chart: %d series, %v", len(n), err)
	}
	subjects := map[string]bool{}
	for _, m := range e.sink.Messages() {
		subjects[m.Header.Get("Subject")] = true
	}
	if !subjects["Hello Ana, spring is here"] {
		t.Errorf("the sink's messages: %v", subjects)
	}
	e.shot(t, "10-campaign-report")
	e.run(t, "dashboard", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(".tiles")))
	e.shot(t, "11-dashboard")
	for _, p := range []struct{ path, name string }{{"/admin/users", "12-users"}, {"/admin/access-review", "13-access-review"}, {"/audit", "14-audit"}, {"/admin/roles", "15-roles"}} {
		e.run(t, p.path, chromedp.Navigate(e.srv.URL+p.path), chromedp.WaitVisible(chromedp.CSS("h1")))
		e.shot(t, p.name)
	}
	e.run(t, "verify audit", chromedp.Navigate(e.srv.URL+"/audit"), chromedp.Click(chromedp.CSS(`form[action="/audit/verify"] button`)), chromedp.WaitVisible(chromedp.ID("verify-report")))
	if got := e.text(t, "#verify-report dd"); got != "verified" {
		t.Errorf("audit verification: %q", got)
	}
	// The phone layout.
	e.run(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Navigate(e.srv.URL+campPath),
		chromedp.WaitVisible(chromedp.CSS("h1")))
	e.shot(t, "16-phone-campaign")
	e.run(t, "phone dashboard", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("h1")))
	e.shot(t, "17-phone-dashboard")
	e.run(t, "desktop", chromedp.EmulateViewport(1280, 900))

	e.idleWarning(t)

	// 6. A form posted from another site is refused, and changes nothing.
	before, _ := e.cs.Count(ctx, e.tenant.ID)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/contacts/new"><input name="email" value="mallory@evil.example"><button id="go">Win a prize</button></form>`, e.srv.URL)
	}))
	defer evil.Close()
	// Another site: "localhost" instead of 127.0.0.1.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(evil.URL, "http://"))
	e.run(t, "cross-site form", chromedp.Navigate("http://localhost:"+port+"/"), chromedp.Click(chromedp.ID("go")), chromedp.WaitVisible(chromedp.CSS("h1")))
	if got := e.text(t, "h1"); got != "Form refused" {
		t.Errorf("cross-site form: %q", got)
	}
	e.shot(t, "18-cross-site-refused")
	if after, _ := e.cs.Count(ctx, e.tenant.ID); after != before {
		t.Errorf("a cross-site form created a contact: %d -> %d", before, after)
	}

	// 7. A viewer: the administration pages answer 403. (Alice's session
	// ended with the inactivity test.)
	e.signIn(t, "victor@acme.example")
	resp, err := chromedp.RunResponse(e.browser, chromedp.Navigate(e.srv.URL+"/admin/users"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusForbidden || e.text(t, "h1") != "Not allowed" {
		t.Errorf("a viewer on /admin/users: %d %q", resp.Status, e.text(t, "h1"))
	}
	if n, _ := chromedp.Run(e.browser, chromedp.Nodes(chromedp.CSSAll(`a[href="/admin/users"]`), chromedp.AtLeast(0))); len(n) != 0 {
		t.Error("the viewer's navigation links to the users page")
	}
	e.shot(t, "19-forbidden")
	t.Logf("screenshots in %s", e.shots)
}

// idleWarning checks the inactivity warning (AUTH-6) in a new tab whose
// clock runs 30 times faster (the test speeds up the page's timers; the
// page itself is unchanged): the warning shows before the idle timeout,
// "Stay signed in" renews the session and hides it, and at the end of
// the timeout the page goes to the sign-in page.
func (e *e2eEnv) idleWarning(t *testing.T) {
	t.Helper()
	tab, cancel := chromedp.NewContext(e.browser)
	defer cancel()
	const fast = `(function(){var f=30,st=window.setTimeout,si=window.setInterval,dn=Date.now,t0=dn();
window.setTimeout=function(fn,ms){return st(fn,(ms||0)/f)};window.setInterval=function(fn,ms){return si(fn,(ms||0)/f)};
Date.now=function(){return t0+(dn()-t0)*f};})();`
	speed := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: fast})
		return err
	})
	ctx, cancelT := context.WithTimeout(tab, 40*time.Second)
	defer cancelT()
	// 5 minutes idle: the warning 75 s before the end (at 7.5 s here), the
	// end at 10 s.
	err := chromedp.Do(ctx, speed, chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("idle-warning")), chromedp.Click(chromedp.ID("idle-stay")),
		chromedp.WaitNotVisible(chromedp.ID("idle-warning")))
	if err != nil {
		t.Fatalf("inactivity warning: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); strings.Contains(loc, "/login") {
		t.Fatalf("signed out although the user chose to stay: %s", loc)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("idle-warning"))); err != nil {
		t.Fatalf("inactivity warning, again: %v", err)
	}
	e.shotOf(t, ctx, "20-idle-warning")
	// The server's idle timer ends too (its clock moves on 6 minutes);
	// had another tab kept the session alive, the sign-in page would send
	// the user back to the dashboard.
	e.offset.Add(int64(6 * time.Minute))
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("tenant"))); err != nil {
		t.Fatalf("no sign-in page at the end of the idle timeout: %v", err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	notice, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".notice")))
	if !strings.HasSuffix(loc, "/login?expired=1") || !strings.Contains(notice, "inactivity") {
		t.Errorf("after the idle timeout: %s %q", loc, notice)
	}
}

func (e *e2eEnv) shotOf(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(e.shots, name+".png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tplIDByName(t *testing.T, e *e2eEnv, name string) string {
	t.Helper()
	list, err := e.camp.Templates.List(context.Background(), e.tenant.ID, templates.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == name {
			return s.ID
		}
	}
	t.Fatalf("no template %q", name)
	return ""
}
