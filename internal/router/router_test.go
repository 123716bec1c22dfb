package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// scripted is a connector whose behaviour each test sets. It stands in for
// a remote end the router must cope with (the real SMTP, SMS and webhook
// connectors are tested against real servers in internal/connectors); here
// it lets a test decide each answer, and counts what reached it.
type scripted struct {
	mu         sync.Mutex
	idempotent bool
	channel    string
	answer     func(m connectors.Message) error
	delivered  map[string]int // Ref -> hand-offs received
	block      chan struct{}  // when set, Send waits on it (a node "dies" mid-hand-off)
	entered    chan struct{}
}

func newScripted(channel string, idempotent bool) *scripted {
	return &scripted{channel: channel, idempotent: idempotent, delivered: map[string]int{}}
}

func (s *scripted) Send(ctx context.Context, batch []connectors.Message) []connectors.Outcome {
	s.mu.Lock()
	block, entered := s.block, s.entered
	s.mu.Unlock()
	if block != nil {
		// The remote end has the messages (it will deliver them) before
		// the answer comes back.
		s.mu.Lock()
		for _, m := range batch {
			s.delivered[m.Ref]++
		}
		s.mu.Unlock()
		if entered != nil {
			select {
			case entered <- struct{}{}:
			default:
			}
		}
		select {
		case <-block:
		case <-ctx.Done():
		}
		out := make([]connectors.Outcome, len(batch))
		for i, m := range batch {
			out[i] = connectors.Outcome{Ref: m.Ref, ProviderRef: "p-" + m.Ref}
		}
		return out
	}
	out := make([]connectors.Outcome, len(batch))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range batch {
		var err error
		if s.answer != nil {
			err = s.answer(m)
		}
		if err == nil {
			s.delivered[m.Ref]++
		}
		out[i] = connectors.Outcome{Ref: m.Ref, ProviderRef: "p-" + m.Ref, Err: err}
	}
	return out
}

func (s *scripted) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{Channels: []string{s.channel}, Idempotent: s.idempotent, MaxBatch: 100}
}
func (s *scripted) Close() error { return nil }

func (s *scripted) count(ref string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[ref]
}

type env struct {
	db      *store.DB
	svc     *router.Service
	admin   *router.Connectors
	tenant  string
	conns   map[string]*scripted // by connector name in config
	keyring *tenants.Keyring
	clock   *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func (e *env) open(kind string, cfg json.RawMessage) (connectors.Connector, error) {
	var c struct{ Name string }
	if err := json.Unmarshal(cfg, &c); err != nil || e.conns[c.Name] == nil {
		return nil, connectors.ConfigError("name", "unknown test connector")
	}
	return e.conns[c.Name], nil
}

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
	kr := tenants.NewKeyring(db, mk, 0)
	e := &env{db: db, tenant: tn.ID, keyring: kr, clock: clk, conns: map[string]*scripted{
		"primary": newScripted(connectors.ChannelEmail, false), "secondary": newScripted(connectors.ChannelEmail, false),
		"sms": newScripted(connectors.ChannelSMS, true)}}
	e.svc = &router.Service{DB: db, Keyring: kr}
	e.admin = &router.Connectors{Service: e.svc, Open: e.open, Redact: func(_ string, raw json.RawMessage) (json.RawMessage, error) { return raw, nil }}
	for _, name := range []string{"primary", "secondary", "sms"} {
		if _, err := e.admin.AddConnector(ctx, tn.ID, name, "test", json.RawMessage(`{"Name":"`+name+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) engine(node string) *router.Engine {
	return router.NewEngine(e.db, e.keyring, e.open, router.EngineOptions{Node: node, Now: e.clock.Now, LeaseTTL: 2 * time.Second,
		Poll: 10 * time.Millisecond, BaseBackoff: time.Minute, MaxAttempts: 3})
}

func run(t *testing.T, fn func(t *testing.T, e *env)) {
	clk := &clock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		fn(t, setup(t, db, clk))
	})
}

func email(to, key string) router.NewMessage {
	return router.NewMessage{Channel: "email", To: to, IdempotencyKey: key, Content: router.Content{From: "news@acme.test", Subject: "Hello", Text: "Hi"}}
}

// drain runs engine steps until nothing is claimed.
func drain(t *testing.T, ctx context.Context, en *router.Engine) {
	t.Helper()
	for i := 0; i < 100; i++ {
		n, err := en.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the queue never drained")
}

func leases(t *testing.T, ctx context.Context, en *router.Engine) {
	t.Helper()
	if err := router.MaintainLeasesForTest(ctx, en); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptSendAndTrace(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", ""), email("b@x.test", ""),
			{Channel: "sms", To: "+33612345678", Content: router.Content{Text: "code 1234"}}})
		if err != nil {
			t.Fatal(err)
		}
		en := e.engine("n1")
		leases(t, ctx, en)
		if len(en.Owned()) != router.Shards {
			t.Fatalf("a single node holds %d shards", len(en.Owned()))
		}
		drain(t, ctx, en)
		for _, a := range acc {
			m, err := e.svc.Get(ctx, e.tenant, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if m.State != router.StateSent || m.ProviderRef != "p-"+a.ID || m.SentAt == nil {
				t.Fatalf("message %s: %+v", a.ID, m)
			}
			kinds := ""
			for _, ev := range m.Events {
				kinds += ev.Kind + ","
			}
			if kinds != "accepted,attempt,sent," {
				t.Fatalf("events %s", kinds)
			}
		}
		if e.conns["primary"].count(acc[0].ID) != 1 || e.conns["sms"].count(acc[2].ID) != 1 || e.conns["secondary"].count(acc[0].ID) != 0 {
			t.Fatal("routing: each message goes to its channel's primary connector exactly once")
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateSent] != 3 || counts[router.StateQueued] != 0 {
			t.Fatalf("counts %v", counts)
		}
		// The recipient is sealed in the store.
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			var to []byte
			if err := tx.QueryRow(ctx, `SELECT recipient_enc FROM messages WHERE tenant_id = $1 AND id = $2`, acc[0].ID).Scan(&to); err != nil {
				return err
			}
			if string(to) == "a@x.test" || len(to) < 20 {
				return errors.New("recipient stored in clear")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var wg sync.WaitGroup
		ids := make([]string, 100)
		errs := make([]error, 100)
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("same@x.test", "order-42")})
				if err == nil {
					ids[i] = acc[0].ID
				}
				errs[i] = err
			}(i)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if ids[i] != ids[0] {
				t.Fatalf("request %d got another message: %s vs %s", i, ids[i], ids[0])
			}
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateQueued] != 1 {
			t.Fatalf("100 requests with one key made %d messages", counts[router.StateQueued])
		}
		en := e.engine("n1")
		leases(t, ctx, en)
		drain(t, ctx, en)
		if e.conns["primary"].count(ids[0]) != 1 {
			t.Fatal("not sent exactly once")
		}
	})
}

// A batch mixes new keys, a key repeated within the batch, a key used by
// an earlier request and messages without a key: one multi-row insert,
// and each duplicate answers the first message's id.
func TestAcceptBatchDuplicateKeys(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		first, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("old@x.test", "k-old")})
		if err != nil {
			t.Fatal(err)
		}
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-a"), email("old@x.test", "k-old"),
			email("a@x.test", "k-a"), email("b@x.test", ""), email("c@x.test", "")})
		if err != nil {
			t.Fatal(err)
		}
		if acc[0].Duplicate || acc[0].ID == "" || acc[3].Duplicate || acc[4].Duplicate || acc[3].ID == acc[4].ID {
			t.Fatalf("new messages: %+v", acc)
		}
		if !acc[1].Duplicate || acc[1].ID != first[0].ID || !acc[2].Duplicate || acc[2].ID != acc[0].ID || acc[2].Status != router.StateQueued {
			t.Fatalf("duplicates: %+v (first %s)", acc, first[0].ID)
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateQueued] != 4 {
			t.Fatalf("queued %d, want 4", counts[router.StateQueued])
		}
		for _, a := range []router.Accepted{acc[0], acc[3]} {
			m, err := e.svc.Get(ctx, e.tenant, a.ID)
			if err != nil || len(m.Events) != 1 || m.Events[0].Kind != "accepted" {
				t.Fatalf("events of %s: %+v %v", a.ID, m.Events, err)
			}
		}
		// A batch of repeats only creates nothing.
		again, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-a"), email("old@x.test", "k-old")})
		if err != nil || again[0].ID != acc[0].ID || again[1].ID != first[0].ID || !again[0].Duplicate || !again[1].Duplicate {
			t.Fatalf("repeat: %+v %v", again, err)
		}
	})
}

// Run records a batch's outcomes in a goroutine while it claims the next:
// when Run is stopped in the middle of a hand-off that then succeeds, the
// outcomes are still recorded (sent, traced) before the leases are given
// back, instead of being left in doubt for the next owner.
func TestRunRecordsOutcomesOnShutdown(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		conn := e.conns["primary"]
		conn.mu.Lock()
		conn.block, conn.entered = make(chan struct{}), make(chan struct{}, 1)
		conn.mu.Unlock()
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", ""), email("b@x.test", "")})
		if err != nil {
			t.Fatal(err)
		}
		en := e.engine("n1")
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- en.Run(runCtx) }()
		<-conn.entered // the remote end has the messages; the answer is pending
		cancel()       // the answer comes back as the node stops
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, a := range acc {
			m, err := e.svc.Get(ctx, e.tenant, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			kinds := ""
			for _, ev := range m.Events {
				kinds += ev.Kind + ","
			}
			if m.State != router.StateSent || kinds != "accepted,attempt,sent," || conn.count(a.ID) != 1 {
				t.Fatalf("message %s after shutdown: %s, events %s, %d hand-offs", a.ID, m.State, kinds, conn.count(a.ID))
			}
		}
		if len(en.Owned()) != 0 {
			t.Fatal("the leases are released on shutdown")
		}
	})
}

// The stored content is plain JSON without HTML escaping (faster to
// decode at hand-off), and decodes to the same content, markup, quotes
// and control characters included.
func TestContentEncoding(t *testing.T) {
	c := router.Content{Subject: "Deals & <news>", HTML: `<p class="x">a & b</p><script>"\u2028"</script>` + "\u2028\n\t", Text: "line\r\nnext \"quoted\" \x01",
		Headers: map[string]string{"List-Unsubscribe": "<https://x.test/u>"}}
	raw, err := router.EncodeContent(c)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) || bytes.Contains(raw, []byte(`\u003c`)) || bytes.HasSuffix(raw, []byte("\n")) {
		t.Fatalf("encoded: %s", raw)
	}
	var back router.Content
	if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	// The hand-off's decoder gives the same; a document the faster
	// decoder refuses (a repeated name, invalid UTF-8) decodes as
	// encoding/json decodes it; one neither takes is an error.
	back = router.Content{}
	if err := router.DecodeContent(raw, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("decode: %+v %v", back, err)
	}
	for _, doc := range []string{`{"subject":"a","subject":"b","text":"x"}`, "{\"subject\":\"b\xff\",\"text\":\"x\"}", `{"Subject":"b","text":"x","extra":1}`} {
		var want, got router.Content
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatal(err)
		}
		if err := router.DecodeContent([]byte(doc), &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("decode %q: %+v %v, want %+v", doc, got, err, want)
		}
	}
	for _, doc := range []string{"", "not json", `{"subject":1}`, `[]`} {
		var got router.Content
		if err := router.DecodeContent([]byte(doc), &got); err == nil {
			t.Fatalf("decode %q: no error", doc)
		}
	}
}

// The content encoder writes field by field: for every content, with
// empty fields, headers, markup, control characters, U+2028 and invalid
// UTF-8, it gives the JSON value encoding/json gives (the same document
// once decoded, the invalid bytes replaced as encoding/json replaces
// them).
func TestContentEncodingMatchesEncodingJSON(t *testing.T) {
	for _, c := range []router.Content{
		{},
		{Text: "plain"},
		{From: "a@b.test", ReplyTo: "r@b.test", Subject: "S", Text: "t", HTML: "<p>h</p>", Headers: map[string]string{"B": "2", "A": "1", "Ü": `\`}},
		{Subject: "ctl \x00\x01\x1f\x7f \u2028\u2029 \"q\" \\ / é 😀", HTML: "<a href='x'>&amp;</a>"},
		{Subject: "bad \xff utf-8", Text: "also \xc3"},
		{Headers: map[string]string{"X-Bad": "\xfe"}},
		{Headers: map[string]string{}},
	} {
		got, err := router.EncodeContent(c)
		if err != nil {
			t.Fatal(err)
		}
		want, err := router.EncodeContentJSON(c)
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("encoded %s, encoding/json %s", got, want)
		}
	}
}

// A batch is handed off in parts, several batches at once (Run): every
// message reaches the connector once, a content that does not decode
// fails that message alone (permanently, not sent), and a content only
// encoding/json decodes is sent as it decodes it.
func TestHandOffInParts(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var batch []router.NewMessage
		for i := 0; i < 450; i++ {
			batch = append(batch, email(fmt.Sprintf("r%d@x.test", i), fmt.Sprintf("k%d", i)))
		}
		acc, err := e.svc.Accept(ctx, e.tenant, batch)
		if err != nil {
			t.Fatal(err)
		}
		crypto, err := e.keyring.Crypto(ctx, e.tenant)
		if err != nil {
			t.Fatal(err)
		}
		bad, dup := acc[7].ID, acc[301].ID
		for id, doc := range map[string]string{bad: "not json", dup: `{"subject":"first","subject":"second","text":"Hi"}`} {
			sealed, err := crypto.Seal("message.content", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE message_contents SET content_enc = $2 WHERE tenant_id = $1 AND message_id = $3`, sealed, id)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		conn := e.conns["primary"]
		subjects := map[string]string{}
		conn.answer = func(m connectors.Message) error { subjects[m.Ref] = m.Subject; return nil }
		en := router.NewEngine(e.db, e.keyring, e.open, router.EngineOptions{Node: "n1", Now: e.clock.Now, LeaseTTL: 2 * time.Second,
			Poll: 10 * time.Millisecond, Batch: 100, HandOffs: 3})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- en.Run(runCtx) }()
		deadline := time.Now().Add(time.Minute)
		for {
			counts, err := e.svc.Counts(ctx, e.tenant, "")
			if err != nil {
				t.Fatal(err)
			}
			if counts[router.StateSent]+counts[router.StateFailed] == int64(len(batch)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not settled: %v", counts)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, a := range acc {
			want := 1
			if a.ID == bad {
				want = 0
			}
			if n := conn.count(a.ID); n != want {
				t.Fatalf("message %s reached the connector %d times, want %d", a.ID, n, want)
			}
		}
		m, err := e.svc.Get(ctx, e.tenant, bad)
		if err != nil || m.State != router.StateFailed || !strings.Contains(m.LastError, "content") {
			t.Fatalf("undecodable content: %+v %v", m, err)
		}
		conn.mu.Lock()
		got := subjects[dup]
		conn.mu.Unlock()
		if got != "second" {
			t.Fatalf("subject of the repeated-name content: %q", got)
		}
	})
}

func TestRetriesFailoverAndDeadLetter(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		if err := e.admin.SetRoute(ctx, e.tenant, "email", "primary", "secondary"); err != nil {
			t.Fatal(err)
		}
		var primaryCalls atomic.Int32
		e.conns["primary"].answer = func(m connectors.Message) error {
			primaryCalls.Add(1)
			return connectors.Temporary(errors.New("421 try later"))
		}
		e.conns["secondary"].answer = func(m connectors.Message) error {
			if m.To == "dead@x.test" {
				return connectors.Temporary(errors.New("451 still no"))
			}
			if m.To == "nobody@x.test" {
				return connectors.Permanent(errors.New("550 no such mailbox"))
			}
			return nil
		}
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("ok@x.test", ""), email("nobody@x.test", ""), email("dead@x.test", "")})
		if err != nil {
			t.Fatal(err)
		}
		en := e.engine("n1")
		leases(t, ctx, en)
		drain(t, ctx, en) // attempt 1: primary, temporary for all
		m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID)
		if m.State != router.StateQueued || m.Attempts != 1 || m.LastError == "" {
			t.Fatalf("after a temporary failure: %+v", m)
		}
		drain(t, ctx, en)
		if primaryCalls.Load() != 3 {
			t.Fatalf("a retry ran before its back-off: %d calls", primaryCalls.Load())
		}
		e.clock.Add(2 * time.Minute) // past the first back-off (1 min +-20%)
		leases(t, ctx, en)           // the clock jumped past the leases: renew them
		drain(t, ctx, en)            // attempt 2: secondary
		if m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID); m.State != router.StateSent || e.conns["secondary"].count(acc[0].ID) != 1 {
			t.Fatalf("fail-over to the secondary: %+v", m)
		}
		if m, _ := e.svc.Get(ctx, e.tenant, acc[1].ID); m.State != router.StateFailed || m.LastError == "" {
			t.Fatalf("permanent failure: %+v", m)
		}
		e.clock.Add(5 * time.Minute)
		leases(t, ctx, en)
		drain(t, ctx, en) // attempt 3 (the last): primary again, temporary -> dead letter
		m, _ = e.svc.Get(ctx, e.tenant, acc[2].ID)
		if m.State != router.StateFailed || m.Attempts != 3 {
			t.Fatalf("dead letter after MaxAttempts: %+v", m)
		}
		last := m.Events[len(m.Events)-1]
		if last.Kind != "failed" || !json.Valid(last.Detail) {
			t.Fatalf("dead-letter event %+v", last)
		}
	})
}

// TestInDoubtHandOff: a node dies between handing a batch to the connector
// and recording the outcome. The next owner of the shard retries the
// messages of an idempotent connector with the same reference, and marks
// the others unknown: nothing is sent twice by the router.
func TestInDoubtHandOff(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", ""),
			{Channel: "sms", To: "+33612345678", Content: router.Content{Text: "hi"}}})
		if err != nil {
			t.Fatal(err)
		}
		block := make(chan struct{})
		for _, c := range e.conns {
			c.block, c.entered = block, make(chan struct{}, 4)
		}
		dying := e.engine("dying")
		leases(t, ctx, dying)
		dctx, kill := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = dying.Step(dctx)
		}()
		<-e.conns["primary"].entered
		<-e.conns["sms"].entered
		// The hand-off reached the remote ends (they will deliver), then
		// the node "dies": its outcome is never recorded.
		for _, c := range e.conns {
			c.mu.Lock()
			c.block = nil
			c.mu.Unlock()
		}
		kill()
		close(block)
		<-done
		for _, a := range acc {
			if m, _ := e.svc.Get(ctx, e.tenant, a.ID); m.State != router.StateSending {
				t.Fatalf("a killed hand-off left %s, want sending", m.State)
			}
		}
		// Its leases expire and it stops counting as alive (2 x TTL);
		// another node takes every shard.
		e.clock.Add(5 * time.Second)
		other := e.engine("other")
		leases(t, ctx, other)
		drain(t, ctx, other)
		mail, _ := e.svc.Get(ctx, e.tenant, acc[0].ID)
		sms, _ := e.svc.Get(ctx, e.tenant, acc[1].ID)
		if mail.State != router.StateUnknown {
			t.Fatalf("SMTP-like hand-off in doubt: %s, want unknown", mail.State)
		}
		if sms.State != router.StateSent || e.conns["sms"].count(acc[1].ID) != 2 {
			t.Fatalf("idempotent hand-off in doubt: %s after %d hand-offs (same reference twice, deduplicated remotely)", sms.State, e.conns["sms"].count(acc[1].ID))
		}
		if e.conns["primary"].count(acc[0].ID) != 1 {
			t.Fatal("the SMTP-like message was handed off again")
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateUnknown] != 1 {
			t.Fatalf("unknown not counted: %v", counts)
		}
	})
}

// TestFencedOutcome: a node that lost its lease while handing off cannot
// record the outcome over the new owner's work.
func TestFencedOutcome(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		acc, _ := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "")})
		block := make(chan struct{})
		e.conns["primary"].block, e.conns["primary"].entered = block, make(chan struct{}, 1)
		slow := e.engine("slow")
		leases(t, ctx, slow)
		done := make(chan struct{})
		go func() { defer close(done); _, _ = slow.Step(ctx) }()
		<-e.conns["primary"].entered
		// The slow node pauses past its lease (and its liveness); another
		// node takes over and settles the in-doubt message as unknown.
		e.clock.Add(5 * time.Second)
		other := e.engine("other")
		leases(t, ctx, other)
		if m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID); m.State != router.StateUnknown {
			t.Fatalf("new owner: %s", m.State)
		}
		// The slow node wakes and tries to record "sent": refused by the fence.
		e.conns["primary"].mu.Lock()
		e.conns["primary"].block = nil
		e.conns["primary"].mu.Unlock()
		close(block)
		<-done
		if m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID); m.State != router.StateUnknown {
			t.Fatalf("a fenced-out node overwrote the outcome: %s", m.State)
		}
	})
}

func TestTwoNodesShareTheShards(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a, b := e.engine("a"), e.engine("b")
		leases(t, ctx, a)
		leases(t, ctx, b)
		leases(t, ctx, a) // a sees b and gives back its extra shards
		leases(t, ctx, b)
		oa, ob := a.Owned(), b.Owned()
		if len(oa)+len(ob) != router.Shards || len(oa) != router.Shards/2 || len(ob) != router.Shards/2 {
			t.Fatalf("shards: a %d, b %d", len(oa), len(ob))
		}
		for s := range oa {
			if _, dup := ob[s]; dup {
				t.Fatalf("shard %d held twice", s)
			}
		}
		var batch []router.NewMessage
		for i := 0; i < 200; i++ {
			batch = append(batch, email(fmt.Sprintf("u%d@x.test", i), ""))
		}
		acc, err := e.svc.Accept(ctx, e.tenant, batch)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, en := range []*router.Engine{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); drain(t, ctx, en) }()
		}
		wg.Wait()
		for _, m := range acc {
			if n := e.conns["primary"].count(m.ID); n != 1 {
				t.Fatalf("message %s handed off %d times", m.ID, n)
			}
		}
	})
}

func TestBadMessagesAreRefused(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		bad := []router.NewMessage{
			{Channel: "fax", To: "x"},
			{Channel: "email", To: "not-an-address", Content: router.Content{Text: "x"}},
			{Channel: "email", To: "a@x.test, b@x.test", Content: router.Content{Text: "x"}},
			{Channel: "email", To: "a@x.test"},
			{Channel: "email", To: "a@x.test", Content: router.Content{Text: "x", Subject: "a\r\nBcc: victim@x.test"}},
			{Channel: "email", To: "a@x.test", Content: router.Content{Text: "x", Headers: map[string]string{"X-A": "b\r\nBcc: v@x.test"}}},
			{Channel: "sms", To: "0612345678", Content: router.Content{Text: "x"}},
			{Channel: "sms", To: "+33612345678"},
			{Channel: "email", To: "a@x.test", Content: router.Content{Text: "x"}, IdempotencyKey: "k\x00"},
			{Channel: "email", To: "a@x.test", Content: router.Content{Text: "x"}, IdempotencyKey: "k\xff"},
		}
		for i, m := range bad {
			var ve *router.ValidationError
			if _, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{m}); !errors.As(err, &ve) {
				t.Errorf("message %d: %v", i, err)
			}
		}
		// One bad message refuses the whole batch, naming its index.
		_, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("ok@x.test", ""), bad[1]})
		var ve *router.ValidationError
		if !errors.As(err, &ve) || ve.Field != "[1].to" {
			t.Fatalf("batch with a bad message: %v", err)
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateQueued] != 0 {
			t.Fatal("refused messages were stored")
		}
		if _, err := e.svc.Get(ctx, e.tenant, "no-such-id"); !errors.Is(err, router.ErrNotFound) {
			t.Fatalf("unknown message: %v", err)
		}
	})
}

// TestInDoubtAnswerIsNotRetried: a connector that cannot deduplicate
// reports that the connection broke after the data left; the router marks
// the message unknown instead of retrying it.
func TestInDoubtAnswerIsNotRetried(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.conns["primary"].answer = func(connectors.Message) error {
			return connectors.Temporary(fmt.Errorf("connection lost after DATA: %w", connectors.ErrInDoubt))
		}
		e.conns["sms"].answer = func(connectors.Message) error {
			return connectors.Temporary(fmt.Errorf("timeout: %w", connectors.ErrInDoubt))
		}
		acc, _ := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", ""), {Channel: "sms", To: "+33612345678", Content: router.Content{Text: "x"}}})
		en := e.engine("n1")
		leases(t, ctx, en)
		drain(t, ctx, en)
		if m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID); m.State != router.StateUnknown {
			t.Fatalf("in-doubt SMTP answer: %s, want unknown", m.State)
		}
		if m, _ := e.svc.Get(ctx, e.tenant, acc[1].ID); m.State != router.StateQueued {
			t.Fatalf("in-doubt answer of an idempotent connector: %s, want queued for a retry with the same reference", m.State)
		}
	})
}

// TestSuppressedBeforeHandOff: a contact who unsubscribed (or was
// blocklisted) after the message was accepted gets nothing.
func TestSuppressedBeforeHandOff(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		m1, m2 := email("a@x.test", ""), email("b@x.test", "")
		m1.ContactID, m2.ContactID = "c-ok", "c-gone"
		acc, _ := e.svc.Accept(ctx, e.tenant, []router.NewMessage{m1, m2})
		en := router.NewEngine(e.db, e.keyring, e.open, router.EngineOptions{Node: "n", Now: e.clock.Now, LeaseTTL: 2 * time.Second,
			Suppress: func(_ context.Context, _, contact, channel, _ string) (bool, string, error) {
				return contact == "c-gone", "unsubscribed from " + channel, nil
			}})
		leases(t, ctx, en)
		drain(t, ctx, en)
		if m, _ := e.svc.Get(ctx, e.tenant, acc[1].ID); m.State != router.StateSuppressed || e.conns["primary"].count(acc[1].ID) != 0 {
			t.Fatalf("suppressed contact: %+v", m)
		}
		if m, _ := e.svc.Get(ctx, e.tenant, acc[0].ID); m.State != router.StateSent {
			t.Fatalf("consenting contact: %s", m.State)
		}
	})
}

// The sealed content lives in message_contents, one row per message
// created: a repeated key (Accept or Enqueue) writes none, and the engine
// hands off what it reads there. A message whose content row is missing
// fails with the reason instead of leaving empty.
func TestContentsWrittenOnce(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		if _, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-a"), email("a@x.test", "k-a"), email("b@x.test", "k-b")}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-a")}); err != nil {
			t.Fatal(err)
		}
		if n, err := e.svc.Enqueue(ctx, e.tenant, []router.NewMessage{email("b@x.test", "k-b"), email("c@x.test", "k-c")}); err != nil || n != 1 {
			t.Fatalf("enqueue: %d %v", n, err)
		}
		var messages, contents, orphans int
		err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM messages WHERE tenant_id = $1`).Scan(&messages); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM message_contents WHERE tenant_id = $1`).Scan(&contents); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM message_contents c WHERE c.tenant_id = $1
				AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = c.tenant_id AND m.id = c.message_id)`).Scan(&orphans)
		})
		if err != nil || messages != 3 || contents != 3 || orphans != 0 {
			t.Fatalf("messages %d, contents %d, orphans %d, %v", messages, contents, orphans, err)
		}
		var lost string
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT id FROM messages WHERE tenant_id = $1 AND idem_key = $2`, "k-c").Scan(&lost); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM message_contents WHERE tenant_id = $1 AND message_id = $2`, lost)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		en := e.engine("n1")
		leases(t, ctx, en)
		drain(t, ctx, en)
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateSent] != 2 || counts[router.StateFailed] != 1 || e.conns["primary"].count(lost) != 0 {
			t.Fatalf("counts %v", counts)
		}
		m, err := e.svc.Get(ctx, e.tenant, lost)
		if err != nil || m.State != router.StateFailed || !strings.Contains(m.LastError, "no content") {
			t.Fatalf("message without content: %+v %v", m, err)
		}
	})
}

// The backup change log of the router's tables (statement-level triggers
// on PostgreSQL since migration 00026, row triggers on SQLite) logs the
// key of every message, content and event inserted, updated or deleted,
// as the same JSON array text in both dialects, and nothing for a tenant
// being restored. A content row's insert is logged with its message's
// (migration 00034: the backup reads the content of every logged message
// key), its update and delete on their own. The messages one statement of
// the router inserts are logged in one key list (migration 00035: one row
// naming them all, read by the backup as their keys; on SQLite from
// selfLogMin rows; migration 00036: an insert alone is a list of one
// key); lists counts those rows.
func TestChangeLogOfRouterTables(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		lists := 0
		changes := func() map[string]int {
			got := map[string]int{}
			lists = 0
			err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
				rows, err := tx.Query(ctx, `SELECT tbl, pk FROM backup_changes WHERE tenant_id = $1 AND tbl IN ('messages', 'message_contents', 'message_events')`)
				if err != nil {
					return err
				}
				defer func() { _ = rows.Close() }()
				for rows.Next() {
					var tbl, pk string
					if err := rows.Scan(&tbl, &pk); err != nil {
						return err
					}
					if !strings.HasPrefix(pk, "[[") {
						got[tbl+" "+pk]++
						continue
					}
					lists++
					var keys []json.RawMessage
					if err := json.Unmarshal([]byte(pk), &keys); err != nil {
						return err
					}
					for _, k := range keys {
						got[tbl+" "+string(k)]++
					}
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-1"), email("b@x.test", "")})
		if err != nil {
			t.Fatal(err)
		}
		// Accepting writes no event row (the 'accepted' event is the
		// message's accepted_at): the events are those a hand-off writes,
		// two in one statement.
		var events []int64
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, 1, 'attempt', ''), ($1, $3, 1, 'attempt', '')`,
				acc[0].ID, acc[1].ID); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT id FROM message_events WHERE tenant_id = $1 ORDER BY id`)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				events = append(events, id)
			}
			return rows.Err()
		})
		if err != nil || len(events) != 2 {
			t.Fatalf("events %v %v", events, err)
		}
		want := map[string]int{}
		for _, a := range acc {
			want[`messages ["`+a.ID+`"]`]++
		}
		for _, id := range events {
			want[fmt.Sprintf("message_events [%d]", id)]++
		}
		// One key list on PostgreSQL (the statement trigger); on SQLite a
		// batch this small is logged by the row trigger (fewer rows than
		// the router logs itself), a list of one key a row: every insert
		// is logged as a list, updates and deletes as plain keys (00036).
		wantLists := 1
		if e.db.Dialect() == store.SQLite {
			wantLists = 2
		}
		if got := changes(); !reflect.DeepEqual(got, want) || lists != wantLists {
			t.Fatalf("after accept: %v in %d key lists, want %v in %d", got, lists, want, wantLists)
		}
		// An update logs the row's key again; a delete too.
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE messages SET attempts = attempts + 1 WHERE tenant_id = $1`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE message_contents SET content_enc = content_enc WHERE tenant_id = $1 AND message_id = $2`, acc[0].ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM message_contents WHERE tenant_id = $1 AND message_id = $2`, acc[1].ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM message_events WHERE tenant_id = $1 AND id = $2`, events[1])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acc {
			want[`messages ["`+a.ID+`"]`]++
			want[`message_contents ["`+a.ID+`"]`]++
		}
		want[fmt.Sprintf("message_events [%d]", events[1])]++
		if got := changes(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after update and delete: %v, want %v", got, want)
		}
		// While the tenant is being restored, nothing is logged.
		err = e.db.Platform(ctx, func(p *store.PlatformTx) error {
			_, err := p.Exec(ctx, `INSERT INTO backup_restoring (tenant_id) VALUES ($1)`, e.tenant)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("c@x.test", "")}); err != nil {
			t.Fatal(err)
		}
		if got := changes(); !reflect.DeepEqual(got, want) {
			t.Fatalf("while restoring: %v, want %v", got, want)
		}
		err = e.db.Platform(ctx, func(p *store.PlatformTx) error {
			_, err := p.Exec(ctx, `DELETE FROM backup_restoring WHERE tenant_id = $1`, e.tenant)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A message inserted by another writer than the router's insert
		// path (as an import or an anonymised copy does) is logged by the
		// row trigger on SQLite, the statement trigger on PostgreSQL.
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO messages (tenant_id, id, shard, channel, recipient_enc, state, due_at, accepted_at, updated_at)
				VALUES ($1, 'other-writer', 0, 'email', $2, 'queued', 1, 1, 1)`, []byte("sealed"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want[`messages ["other-writer"]`]++
		if got := changes(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after another writer's insert: %v, want %v", got, want)
		}
	})
}

// holdGroups makes the first shared Accept transaction's runner wait
// (in Wake, after its commit) until release is closed, so that the calls
// made meanwhile queue up and run as one group.
func holdGroups(t *testing.T, e *env) (held chan struct{}, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.svc.Wake = func() {
		once.Do(func() {
			close(held)
			<-release
		})
	}
	return held, release
}

func waitQueued(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for router.QueuedForTest(e.svc, e.tenant) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", router.QueuedForTest(e.svc, e.tenant), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Concurrent Accept calls share one transaction (group commit): each gets
// its own answer, keys repeated across calls or used before answer the
// first message, each call that created messages has its audit event,
// and every message is stored once with its event.
func TestGroupCommit(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		held, release := holdGroups(t, e)
		first := make(chan []router.Accepted, 1)
		go func() {
			acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("first@x.test", "k-first")})
			if err != nil {
				t.Error(err)
			}
			first <- acc
		}()
		<-held
		calls := [][]router.NewMessage{
			{email("a@x.test", "k-a")}, {email("b@x.test", "k-shared")}, {email("c@x.test", "k-shared")},
			{email("d@x.test", "")}, {email("e@x.test", "k-first")}, {email("f@x.test", "k-f"), email("g@x.test", "k-a"), email("h@x.test", "")},
		}
		answers := make([][]router.Accepted, len(calls))
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for i := range calls {
			wg.Add(1)
			// Each call acts for its own API client: its audit event
			// names it, though the calls share a transaction.
			cctx := audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorAPI, ID: fmt.Sprintf("client-%d", i)}})
			go func() {
				defer wg.Done()
				answers[i], errs[i] = e.svc.Accept(cctx, e.tenant, calls[i])
			}()
			waitQueued(t, e, i+1) // in this order
		}
		close(release)
		wg.Wait()
		f := <-first
		for i, err := range errs {
			if err != nil || len(answers[i]) != len(calls[i]) {
				t.Fatalf("call %d: %+v %v", i, answers[i], err)
			}
		}
		if shared, alone := router.GroupStatsForTest(e.svc); shared != 1 || alone != 0 {
			t.Fatalf("shared transactions %d, calls run alone %d; want 1 and 0", shared, alone)
		}
		a, b, c, d, e1, batch := answers[0][0], answers[1][0], answers[2][0], answers[3][0], answers[4][0], answers[5]
		if a.Duplicate || b.Duplicate || d.Duplicate || batch[0].Duplicate || batch[2].Duplicate {
			t.Fatalf("new messages answered as duplicates: %+v", answers)
		}
		if !c.Duplicate || c.ID != b.ID || !e1.Duplicate || e1.ID != f[0].ID || !batch[1].Duplicate || batch[1].ID != a.ID {
			t.Fatalf("duplicates: %+v (first %s)", answers, f[0].ID)
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateQueued] != 6 {
			t.Fatalf("queued %d, want 6", counts[router.StateQueued])
		}
		for _, acc := range []router.Accepted{a, b, d, batch[0], batch[2]} {
			m, err := e.svc.Get(ctx, e.tenant, acc.ID)
			if err != nil || len(m.Events) != 1 || m.Events[0].Kind != "accepted" {
				t.Fatalf("events of %s: %+v %v", acc.ID, m.Events, err)
			}
		}
		// One audit event per call that created messages (the first call
		// and four of the six grouped ones), counting its own messages.
		var audits int
		var batchCount string
		err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_queue WHERE tenant_id = $1 AND event LIKE '%message.accept%'`).Scan(&audits); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT event FROM audit_queue WHERE tenant_id = $1 AND event LIKE $2`, "%"+batch[0].ID+"%").Scan(&batchCount)
		})
		if err != nil || audits != 5 || !strings.Contains(batchCount, `"count":2`) || !strings.Contains(batchCount, `"client-5"`) {
			t.Fatalf("audit events %d (%v); the batch call's: %s", audits, err, batchCount)
		}
	})
}

// A message that the database refuses fails its own call only: its group
// is rolled back and each call runs alone; the others are stored once
// each, keys deduplicated as usual. A call whose context ended while it
// waited is answered with that error and stores nothing.
func TestGroupCommitFailureIsOwnCall(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// The database refuses one key (a fault no validation catches).
		poison := `CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.idem_key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned message'); END`
		if e.db.Dialect() == store.Postgres {
			poison = `CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'poisoned message'; END $$;
				CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW WHEN (NEW.idem_key = 'poison') EXECUTE FUNCTION poison()`
		}
		if err := e.db.Platform(ctx, func(p *store.PlatformTx) error { _, err := p.Exec(ctx, poison); return err }); err != nil {
			t.Fatal(err)
		}
		held, release := holdGroups(t, e)
		go func() {
			if _, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("first@x.test", "k-first")}); err != nil {
				t.Error(err)
			}
		}()
		<-held
		calls := [][]router.NewMessage{
			{email("a@x.test", "k-a")}, {email("p@x.test", "poison")}, {email("b@x.test", "k-shared")}, {email("c@x.test", "k-shared")},
			{email("d@x.test", "")}, {email("q@x.test", "k-q")}, {email("e@x.test", "k-first")},
		}
		answers := make([][]router.Accepted, len(calls))
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		cctx, cancel := context.WithCancel(ctx)
		for i := range calls {
			wg.Add(1)
			c := ctx
			if i == 5 {
				c = cctx // gives up while queued
			}
			go func() {
				defer wg.Done()
				answers[i], errs[i] = e.svc.Accept(c, e.tenant, calls[i])
			}()
			waitQueued(t, e, i+1)
		}
		cancel()
		close(release)
		wg.Wait()
		if errs[1] == nil || !strings.Contains(errs[1].Error(), "poisoned message") {
			t.Fatalf("the refused message's call: %+v %v", answers[1], errs[1])
		}
		if !errors.Is(errs[5], context.Canceled) {
			t.Fatalf("the cancelled call: %+v %v", answers[5], errs[5])
		}
		for _, i := range []int{0, 2, 3, 4, 6} {
			if errs[i] != nil || len(answers[i]) != 1 || answers[i][0].ID == "" {
				t.Fatalf("call %d: %+v %v", i, answers[i], errs[i])
			}
		}
		if shared, alone := router.GroupStatsForTest(e.svc); shared != 1 || alone != 6 {
			t.Fatalf("shared transactions %d, calls run alone %d; want 1 and 6", shared, alone)
		}
		if !answers[3][0].Duplicate || answers[3][0].ID != answers[2][0].ID || answers[2][0].Duplicate || !answers[6][0].Duplicate {
			t.Fatalf("keys: %+v", answers)
		}
		counts, _ := e.svc.Counts(ctx, e.tenant, "")
		if counts[router.StateQueued] != 4 { // first, a, shared, d
			t.Fatalf("queued %d, want 4", counts[router.StateQueued])
		}
		var events, contents int
		err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM message_events WHERE tenant_id = $1`).Scan(&events); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM message_contents WHERE tenant_id = $1`).Scan(&contents)
		})
		if err != nil || events != 0 || contents != 4 {
			t.Fatalf("events %d, contents %d, %v", events, contents, err)
		}
	})
}

// Accepting a message writes no event row: its 'accepted' event, first in
// its history, is derived from the message's accepted_at (seq 0). A message
// accepted before that change has the event stored: it is shown once, as
// stored.
func TestAcceptedEventIsDerived(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		acc, err := e.svc.Accept(ctx, e.tenant, []router.NewMessage{email("a@x.test", "k-1"), email("b@x.test", "k-2")})
		if err != nil {
			t.Fatal(err)
		}
		rowsOf := func() int {
			var n int
			err := e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FROM message_events WHERE tenant_id = $1`).Scan(&n)
			})
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := rowsOf(); n != 0 {
			t.Fatalf("%d event rows after accepting, want 0", n)
		}
		m, err := e.svc.Get(ctx, e.tenant, acc[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Events) != 1 || m.Events[0].Kind != "accepted" || m.Events[0].Seq != 0 || !m.Events[0].At.Equal(m.AcceptedAt) || m.Events[0].Detail != nil ||
			!m.AcceptedAt.Equal(e.clock.Now()) {
			t.Fatalf("events %+v, accepted at %v", m.Events, m.AcceptedAt)
		}
		// A stored 'accepted' event (a message accepted by an earlier
		// release) is not shown twice; later events follow it.
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, 'accepted', ''), ($1, $2, $3, 'attempt', '{"n":1}')`,
				acc[1].ID, store.Micros(e.clock.Now()))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err = e.svc.Get(ctx, e.tenant, acc[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Events) != 2 || m.Events[0].Kind != "accepted" || m.Events[0].Seq == 0 || m.Events[1].Kind != "attempt" || string(m.Events[1].Detail) != `{"n":1}` {
			t.Fatalf("stored events %+v", m.Events)
		}
		// The derived event comes before the stored ones.
		err = e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, 'attempt', '')`,
				acc[0].ID, store.Micros(e.clock.Now()))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if m, err = e.svc.Get(ctx, e.tenant, acc[0].ID); err != nil || len(m.Events) != 2 || m.Events[0].Kind != "accepted" || m.Events[1].Kind != "attempt" {
			t.Fatalf("events %+v %v", m.Events, err)
		}
	})
}
