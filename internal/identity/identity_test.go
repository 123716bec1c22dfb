package identity_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" // #nosec G505 -- RFC 6238 TOTP uses HMAC-SHA1; an independent reference implementation for the test
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

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

// perms is a fixed permission source for these tests (the real one is
// internal/access, tested there and wired in internal/app).
type perms struct{ byUser map[string][]string }

func (p perms) UserPermissionList(_ context.Context, _, userID string) ([]string, error) {
	return p.byUser[userID], nil
}
func (p perms) ClientPermissionList(context.Context, string, string) ([]string, error) {
	return nil, nil
}
func (p perms) IsAdministrative(perm string) bool { return strings.HasSuffix(perm, ":admin") }

type mailer struct {
	mu    sync.Mutex
	codes []string
}

func (m *mailer) SendCode(_ context.Context, _, _, code string) error {
	m.mu.Lock()
	m.codes = append(m.codes, code)
	m.mu.Unlock()
	return nil
}

type env struct {
	svc    *identity.Service
	db     *store.DB
	tenant tenants.Tenant
	clk    *clock
	perms  perms
	mail   *mailer
}

const goodPassword = "Correct-Horse-42-battery"

var client = identity.Client{IP: "192.0.2.10", Port: "51515", UserAgent: "identity-test/1"}

func setup(t *testing.T, db *store.DB, clk *clock) *env {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	tn, err := ts.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	p := perms{byUser: map[string][]string{}}
	m := &mailer{}
	svc := &identity.Service{DB: db, Tenants: ts, Keyring: tenants.NewKeyring(db, mk, 0), Perms: p, Mailer: m,
		Breach: password.DirRangeChecker{Dir: filepath.Join("password", "testdata", "hibp")}, Now: clk.Now}
	return &env{svc: svc, db: db, tenant: tn, clk: clk, perms: p, mail: m}
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)} }

func run(t *testing.T, fn func(t *testing.T, e *env)) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		fn(t, setup(t, db, clk))
	})
}

func (e *env) user(t *testing.T, email string) identity.User {
	t.Helper()
	u, _, err := e.svc.CreateUser(context.Background(), e.tenant.ID, identity.NewUser{Email: email, Name: "Jane Doe", Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) login(email, pw string) (identity.LoginResult, error) {
	return e.svc.Login(context.Background(), identity.LoginRequest{Tenant: "acme", Email: email, Password: pw, Client: client})
}

func authEvents(t *testing.T, e *env, tenantID string) []audit.Record {
	t.Helper()
	ctx := context.Background()
	var out []audit.Record
	err := e.db.Platform(ctx, func(p *store.PlatformTx) error {
		recs, err := audit.List(ctx, p.Tenant(tenantID), 0, 1000)
		for _, r := range recs {
			if r.Category == audit.CategoryAuth {
				out = append(out, r)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func detail(r audit.Record, key string) string {
	var m map[string]any
	_ = json.Unmarshal(r.Details, &m)
	return fmt.Sprint(m[key])
}

// TestParallelBurstLocksAtTheLimit: 50 wrong passwords at once on one
// account: exactly the configured limit (5) are checked, the rest are
// refused as locked, and afterwards even the right password is refused.
func TestParallelBurstLocksAtTheLimit(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user(t, "jane@acme.test")
		var wg sync.WaitGroup
		var invalid, locked, other atomic.Int32
		start := make(chan struct{})
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				c := client
				c.IP = fmt.Sprintf("198.51.100.%d", i) // many addresses: the account limit is what is tested
				_, err := e.svc.Login(context.Background(), identity.LoginRequest{Tenant: "acme", Email: "jane@acme.test", Password: "wrong-password-" + fmt.Sprint(i), Client: c})
				switch {
				case errors.Is(err, identity.ErrInvalidCredentials):
					invalid.Add(1)
				case errors.Is(err, identity.ErrLocked):
					locked.Add(1)
				default:
					other.Add(1)
					t.Errorf("attempt %d: %v", i, err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		if invalid.Load() != 5 || locked.Load() != 45 {
			t.Fatalf("checked %d passwords, refused %d as locked; want exactly 5 and 45", invalid.Load(), locked.Load())
		}
		checked := 0
		for _, r := range authEvents(t, e, e.tenant.ID) {
			if detail(r, "reason") == "bad_password" {
				checked++
			}
		}
		if checked != 5 {
			t.Fatalf("%d bad_password events, want 5", checked)
		}
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrLocked) {
			t.Fatalf("right password on a locked account: %v", err)
		}
		// The lock is temporary (15 min by default) and grows.
		e.clk.Add(16 * time.Minute)
		if r, err := e.login("jane@acme.test", goodPassword); err != nil || r.Session == nil {
			t.Fatalf("after the lock expired: %v", err)
		}
	})
}

func TestLockGrowsAndPermanentNeedsUnlock(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.user(t, "jane@acme.test")
		fail := func(n int) {
			for i := 0; i < n; i++ {
				if _, err := e.login("jane@acme.test", "nope-nope-nope"); !errors.Is(err, identity.ErrInvalidCredentials) {
					t.Fatalf("failure %d: %v", i, err)
				}
			}
		}
		fail(5)
		e.clk.Add(15*time.Minute + time.Second)
		fail(5) // second lock: 30 minutes
		e.clk.Add(20 * time.Minute)
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrLocked) {
			t.Fatalf("second lock did not grow: %v", err)
		}
		e.clk.Add(11 * time.Minute)
		if _, err := e.login("jane@acme.test", goodPassword); err != nil {
			t.Fatalf("after the second lock: %v", err)
		}
		// Permanent lock: only an administrator's unlock opens it.
		if _, err := e.svc.Tenants.SetPolicy(ctx, e.tenant.ID, json.RawMessage(`{"lockout":{"permanent":true}}`)); err != nil {
			t.Fatal(err)
		}
		fail(5)
		e.clk.Add(48 * time.Hour)
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrLocked) {
			t.Fatalf("permanent lock expired by itself: %v", err)
		}
		got, _ := e.svc.GetUser(ctx, e.tenant.ID, u.ID)
		if !got.Locked {
			t.Fatal("user not reported locked")
		}
		if err := e.svc.Unlock(ctx, e.tenant.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.login("jane@acme.test", goodPassword); err != nil {
			t.Fatalf("after unlock: %v", err)
		}
	})
}

func TestPerIPThrottle(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		if _, err := e.svc.Tenants.SetPolicy(ctx, e.tenant.ID, json.RawMessage(`{"lockout":{"max_failures_per_ip":3}}`)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := e.login(fmt.Sprintf("nobody%d@acme.test", i), "whatever-password"); !errors.Is(err, identity.ErrInvalidCredentials) {
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		e.user(t, "jane@acme.test")
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrThrottled) {
			t.Fatalf("fourth attempt from the address: %v", err)
		}
		e.clk.Add(16 * time.Minute)
		if _, err := e.login("jane@acme.test", goodPassword); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
}

func TestEveryAttemptIsRecorded(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.user(t, "jane@acme.test")
		_, _ = e.login("jane@acme.test", "bad-password-1")
		_, _ = e.login("ghost@acme.test", "bad-password-2")
		_, _ = e.login("jane@acme.test", goodPassword)
		_, _ = e.svc.Login(context.Background(), identity.LoginRequest{Tenant: "no-such-tenant", Email: "x@y.test", Password: "p", Client: client})
		want := []string{"bad_password", "unknown_user", "ok"}
		var got []string
		for _, r := range authEvents(t, e, e.tenant.ID) {
			if r.Action != "auth.login" {
				continue
			}
			got = append(got, detail(r, "reason"))
			if r.IP != client.IP || r.UserAgent != client.UserAgent || detail(r, "source_port") != client.Port || detail(r, "method") != "password" {
				t.Errorf("event lacks source details: %+v %s", r, r.Details)
			}
			if r.At.IsZero() {
				t.Error("no time")
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("reasons %v, want %v", got, want)
		}
		platform := authEvents(t, e, "")
		if len(platform) != 1 || detail(platform[0], "reason") != "unknown_or_disabled_tenant" || detail(platform[0], "username") != "x@y.test" {
			t.Fatalf("unknown tenant attempt: %+v", platform)
		}
		for _, r := range authEvents(t, e, e.tenant.ID) {
			if strings.Contains(string(r.Details), goodPassword) || strings.Contains(string(r.Details), "bad-password") {
				t.Fatal("a password reached the audit trail")
			}
		}
	})
}

// totpCode is an independent RFC 6238 implementation (HMAC-SHA1, 30 s,
// 6 digits), written from the RFC, not with the library under test.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(secret))
	if err != nil {
		t.Fatal(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

func TestTOTPLogsInOnceWithAnIndependentCode(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user(t, "jane@acme.test")
		r, err := e.login("jane@acme.test", goodPassword)
		if err != nil || r.Session == nil {
			t.Fatalf("first login: %v", err)
		}
		p, err := e.svc.Authenticate(ctx, r.Session.Secret, client)
		if err != nil {
			t.Fatal(err)
		}
		enr, err := e.svc.BeginTOTP(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if png, err := enr.PNG(256); err != nil || len(png) < 100 {
			t.Fatalf("QR code: %v", err)
		}
		if _, err := e.svc.ConfirmTOTP(ctx, p, "000000"); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("wrong confirmation code: %v", err)
		}
		recovery, err := e.svc.ConfirmTOTP(ctx, p, totpCode(t, enr.Secret, e.clk.Now()))
		if err != nil || len(recovery) != 10 {
			t.Fatalf("confirm: %d codes, %v", len(recovery), err)
		}
		e.clk.Add(90 * time.Second)
		r, err = e.login("jane@acme.test", goodPassword)
		if err != nil || r.Session != nil || r.MFAToken == "" {
			t.Fatalf("login with TOTP enabled must ask for the second factor: %+v %v", r, err)
		}
		code := totpCode(t, enr.Secret, e.clk.Now())
		if _, err := e.svc.VerifyMFA(ctx, r.MFAToken, code, client); err != nil {
			t.Fatalf("independent TOTP code refused: %v", err)
		}
		// The same code again, on a fresh challenge: refused (replay).
		r2, _ := e.login("jane@acme.test", goodPassword)
		if _, err := e.svc.VerifyMFA(ctx, r2.MFAToken, code, client); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("replayed TOTP code: %v", err)
		}
		// The challenge of the first success is spent.
		if _, err := e.svc.VerifyMFA(ctx, r.MFAToken, code, client); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("reused challenge: %v", err)
		}
		// A recovery code works once.
		if _, err := e.svc.VerifyMFA(ctx, r2.MFAToken, strings.ToUpper(recovery[0]), client); err != nil {
			t.Fatalf("recovery code: %v", err)
		}
		r3, _ := e.login("jane@acme.test", goodPassword)
		if _, err := e.svc.VerifyMFA(ctx, r3.MFAToken, recovery[0], client); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("recovery code used twice: %v", err)
		}
		// Five wrong codes burn the challenge.
		for i := 0; i < 5; i++ {
			_, _ = e.svc.VerifyMFA(ctx, r3.MFAToken, "123456", client)
		}
		if _, err := e.svc.VerifyMFA(ctx, r3.MFAToken, totpCode(t, enr.Secret, e.clk.Now().Add(30*time.Second)), client); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("challenge survived 5 wrong codes: %v", err)
		}
	})
}

func TestEmailCodeSecondFactor(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.user(t, "admin@acme.test")
		e.perms.byUser[u.ID] = []string{"users:admin"}
		if _, err := e.svc.Tenants.SetPolicy(ctx, e.tenant.ID, json.RawMessage(`{"two_factor":{"required":"admins"}}`)); err != nil {
			t.Fatal(err)
		}
		r, err := e.login("admin@acme.test", goodPassword)
		if err != nil || r.MFAToken == "" || strings.Join(r.MFAMethods, ",") != "email_code" {
			t.Fatalf("admin without TOTP under an admins policy: %+v %v", r, err)
		}
		if err := e.svc.SendEmailCode(ctx, r.MFAToken); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.SendEmailCode(ctx, r.MFAToken); !errors.Is(err, identity.ErrThrottled) {
			t.Fatalf("immediate resend: %v", err)
		}
		code := e.mail.codes[0]
		if len(code) < 6 {
			t.Fatalf("code %q", code)
		}
		if _, err := e.svc.VerifyMFA(ctx, r.MFAToken, code, client); err != nil {
			t.Fatalf("email code: %v", err)
		}
		// Expired after 10 minutes.
		r, _ = e.login("admin@acme.test", goodPassword)
		_ = e.svc.SendEmailCode(ctx, r.MFAToken)
		e.clk.Add(4 * time.Minute) // the challenge itself lives 5 minutes
		e.clk.Add(2 * time.Minute)
		if _, err := e.svc.VerifyMFA(ctx, r.MFAToken, e.mail.codes[1], client); !errors.Is(err, identity.ErrInvalidCode) {
			t.Fatalf("expired challenge: %v", err)
		}
	})
}

func TestSessionsTimeoutsAndRevocation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.user(t, "jane@acme.test")
		r, err := e.login("jane@acme.test", goodPassword)
		if err != nil {
			t.Fatal(err)
		}
		sec := r.Session.Secret
		p, err := e.svc.Authenticate(ctx, sec, client)
		if err != nil || p.UserID != u.ID || !p.PasswordChangeRequired {
			t.Fatalf("authenticate: %+v %v (an initial password must be changed)", p, err)
		}
		// Idle timeout: 30 minutes by default; activity extends it.
		e.clk.Add(29 * time.Minute)
		if _, err := e.svc.Authenticate(ctx, sec, client); err != nil {
			t.Fatalf("within idle timeout: %v", err)
		}
		e.clk.Add(29 * time.Minute)
		if _, err := e.svc.Authenticate(ctx, sec, client); err != nil {
			t.Fatalf("activity did not extend the session: %v", err)
		}
		e.clk.Add(31 * time.Minute)
		if _, err := e.svc.Authenticate(ctx, sec, client); !errors.Is(err, identity.ErrNoSession) {
			t.Fatalf("idle session accepted: %v", err)
		}
		// Absolute lifetime: 12 h even with activity.
		r, _ = e.login("jane@acme.test", goodPassword)
		for i := 0; i < 26; i++ {
			e.clk.Add(28 * time.Minute)
			_, err := e.svc.Authenticate(ctx, r.Session.Secret, client)
			if i < 25 && err != nil {
				t.Fatalf("active session dropped after %d steps: %v", i, err)
			}
			if i == 25 && !errors.Is(err, identity.ErrNoSession) {
				t.Fatalf("session outlived its absolute lifetime: %v", err)
			}
		}
		// List and revoke; logout; disabling the user revokes everything.
		a, _ := e.login("jane@acme.test", goodPassword)
		b, _ := e.login("jane@acme.test", goodPassword)
		pa, _ := e.svc.Authenticate(ctx, a.Session.Secret, client)
		list, err := e.svc.ListSessions(ctx, e.tenant.ID, u.ID, pa.SessionHash)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %d %v", len(list), err)
		}
		for _, s := range list {
			if !s.Current {
				if err := e.svc.RevokeSession(ctx, e.tenant.ID, s.ID, u.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := e.svc.Authenticate(ctx, b.Session.Secret, client); !errors.Is(err, identity.ErrNoSession) {
			t.Fatalf("revoked session accepted: %v", err)
		}
		if err := e.svc.RevokeSession(ctx, e.tenant.ID, list[0].ID, "someone-else"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("revoking another user's session: %v", err)
		}
		if err := e.svc.Logout(ctx, a.Session.Secret); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, a.Session.Secret, client); !errors.Is(err, identity.ErrNoSession) {
			t.Fatalf("logged-out session accepted: %v", err)
		}
		c, _ := e.login("jane@acme.test", goodPassword)
		if err := e.svc.SetUserStatus(ctx, e.tenant.ID, u.ID, identity.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, c.Session.Secret, client); !errors.Is(err, identity.ErrNoSession) {
			t.Fatalf("disabled user's session accepted: %v", err)
		}
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("disabled user logged in: %v", err)
		}
	})
}

func TestForgedAndCrossTenantSessions(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user(t, "jane@acme.test")
		other, err := e.svc.Tenants.Create(ctx, "Other", "other")
		if err != nil {
			t.Fatal(err)
		}
		r, _ := e.login("jane@acme.test", goodPassword)
		sec := r.Session.Secret
		swapped := strings.Replace(sec, e.tenant.ID, other.ID, 1)
		for _, bad := range []string{"", "x", sec + "x", sec[:len(sec)-1], swapped, "rss_" + e.tenant.ID + ".AAAA", strings.Repeat("a", 5000)} {
			if _, err := e.svc.Authenticate(ctx, bad, client); !errors.Is(err, identity.ErrNoSession) {
				t.Errorf("forged session %.40q: %v", bad, err)
			}
		}
		if _, err := e.svc.Login(ctx, identity.LoginRequest{Tenant: "other", Email: "jane@acme.test", Password: goodPassword, Client: client}); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("a user of acme signed in to another tenant: %v", err)
		}
	})
}

func TestPasswordPolicyHistoryAndBreach(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u := e.user(t, "jane@acme.test")
		codes := func(err error) string {
			var pe *identity.PolicyError
			if !errors.As(err, &pe) {
				return fmt.Sprintf("not a policy error: %v", err)
			}
			var c []string
			for _, v := range pe.Violations {
				c = append(c, v.Code)
			}
			return strings.Join(c, ",")
		}
		cases := []struct{ pw, want string }{
			{"Short-1a", "too_short"},
			{"alllowercaseletters", "too_few_classes"},
			{"password123!", "breached"},
			{"Jane-Secret-2026", "contains_identity"},
		}
		for _, tc := range cases {
			err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, goodPassword, tc.pw, nil)
			if got := codes(err); !strings.Contains(got, tc.want) {
				t.Errorf("%q: %s, want %s", tc.pw, got, tc.want)
			}
		}
		if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, "not-the-current", "Another-Good-Pass-7", nil); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("wrong current password: %v", err)
		}
		// History: the last 5 cannot be reused.
		pws := []string{"Second-Good-Pass-1", "Third-Good-Pass-2", "Fourth-Good-Pass-3", "Fifth-Good-Pass-4"}
		cur := goodPassword
		for _, pw := range pws {
			e.clk.Add(time.Minute)
			if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, cur, pw, nil); err != nil {
				t.Fatalf("change to %s: %v", pw, err)
			}
			cur = pw
		}
		e.clk.Add(time.Minute)
		if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, cur, goodPassword, nil); !strings.Contains(codes(err), "reused") {
			t.Fatalf("reuse of a password among the last 5: %v", err)
		}
		if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, cur, "Sixth-Good-Pass-5", nil); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(time.Minute)
		if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, "Sixth-Good-Pass-5", goodPassword, nil); err != nil {
			t.Fatalf("the 6th-oldest password should be allowed again: %v", err)
		}
		// Privileged accounts need 20 characters.
		e.perms.byUser[u.ID] = []string{"users:admin"}
		if err := e.svc.ChangePassword(ctx, e.tenant.ID, u.ID, goodPassword, "Seventeen-Chars-9", nil); !strings.Contains(codes(err), "too_short") {
			t.Fatalf("short password for an administrator: %v", err)
		}
		// After a change the session no longer demands one; after 90 days it does.
		r, _ := e.login("jane@acme.test", goodPassword)
		p, _ := e.svc.Authenticate(ctx, r.Session.Secret, client)
		if p.PasswordChangeRequired {
			t.Fatal("fresh password flagged for change")
		}
		e.clk.Add(91 * 24 * time.Hour)
		r, _ = e.login("jane@acme.test", goodPassword)
		p, _ = e.svc.Authenticate(ctx, r.Session.Secret, client)
		if !p.PasswordChangeRequired {
			t.Fatal("a 91-day-old password is not flagged")
		}
	})
}

func TestEnrolmentLinkIsSingleUse(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		u, link, err := e.svc.CreateUser(ctx, e.tenant.ID, identity.NewUser{Email: "new@acme.test", Name: "New Person"})
		if err != nil || link == "" || u.HasPassword {
			t.Fatalf("create without password: %+v %q %v", u, link, err)
		}
		if _, err := e.login("new@acme.test", ""); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("login before enrolment: %v", err)
		}
		if _, err := e.svc.Enrol(ctx, link, "short"); err == nil {
			t.Fatal("weak first password accepted")
		}
		if _, err := e.svc.Enrol(ctx, link, "First-Good-Password-1"); err != nil {
			t.Fatalf("enrol: %v", err)
		}
		if _, err := e.svc.Enrol(ctx, link, "Second-Good-Password-2"); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("link used twice: %v", err)
		}
		if r, err := e.login("new@acme.test", "First-Good-Password-1"); err != nil || r.Session == nil {
			t.Fatalf("login after enrolment: %v", err)
		}
		_, link2, _ := e.svc.CreateUser(ctx, e.tenant.ID, identity.NewUser{Email: "late@acme.test", Name: "Late"})
		e.clk.Add(identity.EnrolmentTTL + time.Minute)
		if _, err := e.svc.Enrol(ctx, link2, "First-Good-Password-1"); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("expired link: %v", err)
		}
	})
}

func TestUserBadInputAndEncryption(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, bad := range []identity.NewUser{
			{Email: "not-an-email", Name: "x"},
			{Email: "Jane <jane@acme.test>", Name: "x"},
			{Email: "jane@localhost", Name: "x"},
			{Email: strings.Repeat("a", 250) + "@acme.test", Name: "x"},
			{Email: "ok@acme.test", Name: "bad\x00name"},
			{Email: "ok@acme.test", Name: "x", Password: "weak"},
		} {
			if _, _, err := e.svc.CreateUser(ctx, e.tenant.ID, bad); err == nil {
				t.Errorf("accepted %+v", bad)
			}
		}
		e.user(t, "Jane@Acme.test")
		if _, _, err := e.svc.CreateUser(ctx, e.tenant.ID, identity.NewUser{Email: "jane@acme.TEST", Name: "Dup", Password: goodPassword}); !errors.Is(err, identity.ErrConflict) {
			t.Fatalf("duplicate email (case-insensitive): %v", err)
		}
		users, err := e.svc.ListUsers(ctx, e.tenant.ID)
		if err != nil || len(users) != 1 || users[0].Email != "jane@acme.test" {
			t.Fatalf("list: %+v %v", users, err)
		}
		// No plaintext email or name in the users table.
		err = e.db.Tenant(e.tenant.ID).Tx(ctx, func(tx *store.Tx) error {
			var email, name []byte
			if err := tx.QueryRow(ctx, `SELECT email_enc, name_enc FROM users WHERE tenant_id = $1`).Scan(&email, &name); err != nil {
				return err
			}
			if strings.Contains(string(email), "jane") || strings.Contains(string(name), "Jane") {
				return errors.New("plaintext personal data in users")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestAPIClients(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cl, secret, err := e.svc.CreateClient(ctx, e.tenant.ID, "ci", []string{"192.0.2.0/24"})
		if err != nil || !strings.HasPrefix(secret, "rlk_") {
			t.Fatal(err)
		}
		if _, err := e.svc.AuthenticateClient(ctx, cl.ID, secret, client); err != nil {
			t.Fatalf("good secret: %v", err)
		}
		for _, bad := range []struct{ id, secret string }{
			{cl.ID, secret + "x"}, {cl.ID, ""}, {cl.ID + "0", secret}, {"rlc_nope", secret}, {"", ""}, {strings.Repeat("x", 300), secret},
		} {
			if _, err := e.svc.AuthenticateClient(ctx, bad.id, bad.secret, client); !errors.Is(err, identity.ErrInvalidCredentials) {
				t.Errorf("%.30q/%.10q: %v", bad.id, bad.secret, err)
			}
		}
		outside := client
		outside.IP = "203.0.113.9"
		if _, err := e.svc.AuthenticateClient(ctx, cl.ID, secret, outside); !errors.Is(err, identity.ErrIPNotAllowed) {
			t.Fatalf("address outside the client's allow-list: %v", err)
		}
		_, v1, _ := e.svc.ClientVersion(ctx, e.tenant.ID, cl.ID)
		if err := e.svc.SetClientStatus(ctx, e.tenant.ID, cl.ID, identity.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		active, v2, _ := e.svc.ClientVersion(ctx, e.tenant.ID, cl.ID)
		if active || v2 <= v1 {
			t.Fatalf("disable did not revoke: active %v, version %d -> %d", active, v1, v2)
		}
		if _, err := e.svc.AuthenticateClient(ctx, cl.ID, secret, client); !errors.Is(err, identity.ErrInvalidCredentials) {
			t.Fatalf("disabled client: %v", err)
		}
		if _, _, err := e.svc.CreateClient(ctx, e.tenant.ID, "ci", nil); !errors.Is(err, identity.ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		if _, _, err := e.svc.CreateClient(ctx, e.tenant.ID, "x", []string{"not-a-cidr"}); err == nil {
			t.Fatal("bad CIDR accepted")
		}
	})
}

func TestNetworkAllowList(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user(t, "jane@acme.test")
		r, _ := e.login("jane@acme.test", goodPassword)
		if _, err := e.svc.Tenants.SetPolicy(ctx, e.tenant.ID, json.RawMessage(`{"network":{"ui_allow":["10.0.0.0/8","2001:db8::/32"]}}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.login("jane@acme.test", goodPassword); !errors.Is(err, identity.ErrIPNotAllowed) {
			t.Fatalf("login from outside the allow-list: %v", err)
		}
		if _, err := e.svc.Authenticate(ctx, r.Session.Secret, client); !errors.Is(err, identity.ErrIPNotAllowed) {
			t.Fatalf("session used from outside the allow-list: %v", err)
		}
		for ip, want := range map[string]bool{"10.1.2.3": true, "2001:db8::1": true, "::ffff:10.0.0.1": true, "11.0.0.1": false, "garbage": false} {
			if got := identity.Allowed([]string{"10.0.0.0/8", "2001:db8::/32"}, ip); got != want {
				t.Errorf("%s: %v", ip, got)
			}
		}
	})
}

func TestCSRFToken(t *testing.T) {
	a, b := "rss_t.aaaa", "rss_t.bbbb"
	if identity.CSRFToken(a) == identity.CSRFToken(b) || len(identity.CSRFToken(a)) < 22 {
		t.Fatal("CSRF tokens must differ per session and carry >= 128 bits")
	}
	if !identity.CheckCSRF(a, identity.CSRFToken(a)) || identity.CheckCSRF(a, identity.CSRFToken(b)) || identity.CheckCSRF(a, "") {
		t.Fatal("CSRF check")
	}
	if strings.Contains(identity.CSRFToken(a), "aaaa") {
		t.Fatal("token reveals the session")
	}
}
