package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/pgtest"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

// Campaign throughput (issue 5, benchmark b): N contacts with email
// consent in one list, a 4.5 kB email template with merge fields and an
// unsubscribe link, an SMTP connector (pool of 4, STARTTLS with a private
// certificate) to the in-process SMTP sink on loopback, the router engine
// (with the consent check before each hand-off) and the campaigns job
// running in this process. Timed: from the Schedule call to the last
// message at the sink; every message is durable (a queue row with its
// events) and traced (accepted, attempt, sent) before or as it leaves.
// N is 100,000, or RELAIS_BENCH_CAMPAIGN.
//
//	go test -run '^$' -bench Campaign -benchtime 1x -timeout 60m ./bench/
//	RELAIS_BENCH_CAMPAIGN=1000000 go test -run '^$' -bench CampaignSQLite -benchtime 1x -timeout 120m ./bench/
//
// Metrics: msgs/s (end to end), ref-msgs/s (the reference: the same number
// of pre-rendered messages of the same size pushed by the same SMTP
// connector into the same sink, nothing else), ratio, peak-RSS-MB (VmHWM
// during the campaign alone), cpu-s (user + system CPU seconds of the
// process during the campaign).
//
// Ingestion (benchmark a): messages accepted durably per second, through
// router.Service.Accept one per call (as POST /api/v1/messages does), from
// one caller (one transaction each) and from 16 callers at once (their
// calls share transactions: group commit), and router.Service.Enqueue and
// Accept in batches of 1000, against the store's raw insert rate of the
// same rows (same columns and indexes, in clear, no events, no audit, no
// change log) into a plain table, one per transaction from one goroutine
// and from 16 at once, and 1000 per transaction. cpuratio1 and
// cpuratio-acceptbatch are ratio1 and ratio-acceptbatch by CPU time instead
// of the wall clock (this process's and, on PostgreSQL, the server's
// processes'), steadier when the machine is shared.
//
//	go test -run '^$' -bench Ingest -benchtime 1x ./bench/
//	RELAIS_BENCH_NO_GROUP_COMMIT=1 go test -run '^$' -bench Ingest -benchtime 1x ./bench/ # each call alone

func benchCampaignSize() int {
	if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_CAMPAIGN")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

type campaignEnv struct {
	db       *store.DB
	tenant   string
	keyring  *tenants.Keyring
	contacts *contacts.Service
	tmpl     *templates.Service
	router   *router.Service
	camp     *campaigns.Service
	sink     *sinkProcess
	smtpCfg  json.RawMessage
}

func openCampaignEnv(b *testing.B, url string) *campaignEnv {
	b.Helper()
	ctx := context.Background()
	env := openTenantEnv(b, url, "Bench", "bench")
	db, t, kr := env.db, env.tenant, env.keyring
	e := &campaignEnv{db: db, tenant: t.ID, keyring: kr}
	e.contacts = &contacts.Service{DB: db, Keyring: kr}
	e.tmpl = &templates.Service{DB: db}
	e.router = &router.Service{DB: db, Keyring: kr}
	e.camp = &campaigns.Service{DB: db, Contacts: e.contacts, Templates: e.tmpl, Router: e.router, PublicBaseURL: "https://relais.example"}
	e.sink = startSinkProcess(b)
	e.smtpCfg, _ = json.Marshal(map[string]any{"host": "127.0.0.1", "port": e.sink.Port(), "tls": "starttls", "from": "news@acme.example",
		"root_cas_pem": string(e.sink.CertPEM()), "pool_size": 4})
	conns := &router.Connectors{Service: e.router, Open: registry.Open, Redact: registry.Redact}
	if _, err := conns.AddConnector(ctx, t.ID, "mail", registry.TypeSMTP, e.smtpCfg); err != nil {
		b.Fatal(err)
	}
	return e
}

// loadAudience imports n contacts with email consent into one list.
func (e *campaignEnv) loadAudience(b *testing.B, n int) string {
	b.Helper()
	ctx := context.Background()
	l, err := e.contacts.CreateList(ctx, e.tenant, "Newsletter", "")
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "audience.csv"))
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString("email,first_name,last_name,locale,timezone\n")
	zones := []string{"Europe/Paris", "Europe/Berlin", "Europe/London", "America/New_York"}
	for i := 0; i < n; i++ {
		local := uint32(uint64(i) * 2654435761 % (1 << 32))
		fmt.Fprintf(&buf, "reader.%08x@example.com,Reader%d,Number%d,en,%s\n", local, i, i, zones[i%len(zones)])
		if buf.Len() > 1<<20 {
			_, _ = f.Write(buf.Bytes())
			buf.Reset()
		}
	}
	_, _ = f.Write(buf.Bytes())
	if _, err := f.Seek(0, 0); err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	job, err := e.contacts.Import(ctx, e.tenant, f, contacts.ImportOptions{Lists: []string{l.ID}, BatchSize: 5000,
		Consents: []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Wording: "Send me the newsletter."}}})
	if err != nil || job.Created != int64(n) {
		b.Fatalf("import: %+v %v", job, err)
	}
	return l.ID
}

// benchHTML is a 4.5 kB newsletter (with the derived text part, the
// message at the sink is about 4.5 kB of body plus headers).
func benchHTML() string {
	var sb strings.Builder
	sb.WriteString(`<html><body><h1>Hello {{.contact.first_name}} {{.contact.last_name}}</h1>`)
	for i := 0; i < 9; i++ {
		sb.WriteString(`<p>This month at Acme: new arrivals in every department, a spring sale on garden furniture, ` +
			`and our loyalty programme gets better. Read on for the details and the best offers of the season.</p>`)
	}
	sb.WriteString(`<p>Your locale: {{.contact.locale}}; your time zone: {{.contact.timezone}}.</p>`)
	sb.WriteString(`<p><a href="{{.links.unsubscribe}}">Unsubscribe</a></p></body></html>`)
	return sb.String()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func benchCampaign(b *testing.B, url func(b *testing.B) string) {
	n := benchCampaignSize()
	ctx := context.Background()
	var secs, peak, cpu, sinkCPU float64
	var ref, bare pushCost
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := openCampaignEnv(b, url(b))
		list := e.loadAudience(b, n)
		tmpl := e.newsletter(b)
		c, err := e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "Bench", Channel: "email", TemplateID: tmpl.ID,
			Audience: campaigns.Audience{ListIDs: []string{list}}})
		if err != nil {
			b.Fatal(err)
		}
		node := fmt.Sprintf("bench-%d", i)
		sup := &campaigns.Suppressor{Contacts: e.contacts}
		// RELAIS_BENCH_ENGINE_BATCH: the claim's size, for experiments
		// (the engine's default, 500, otherwise).
		batch, _ := strconv.Atoi(os.Getenv("RELAIS_BENCH_ENGINE_BATCH"))
		eng := router.NewEngine(e.db, e.keyring, registry.Open, router.EngineOptions{Node: node, Suppress: sup.Check, SuppressLoad: sup.Preload, Batch: batch})
		e.router.Wake = eng.Wake
		runCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = eng.Run(runCtx) }()
		go func() { defer wg.Done(); _ = e.camp.Run(runCtx) }()
		// Give back what the set-up (import) used, then measure anew.
		debug.FreeOSMemory()
		resetHWM()
		cpu0, sink0 := cpuSeconds(), e.sink.CPU()
		b.StartTimer()
		start := time.Now()
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			b.Fatal(err)
		}
		if err := e.sink.WaitFor(n, 2*time.Hour); err != nil {
			b.Fatal(err)
		}
		secs += time.Since(start).Seconds()
		b.StopTimer()
		cpu += cpuSeconds() - cpu0
		sinkCPU += e.sink.CPU() - sink0
		peak = max(peak, vmHWM())
		// The last outcomes are recorded just after the sink has the
		// messages.
		deadline := time.Now().Add(time.Minute)
		for {
			r, err := e.camp.Report(ctx, e.tenant, c.ID)
			if err != nil {
				b.Fatal(err)
			}
			if r.HandedOff == int64(n) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if d := e.sink.Distinct(); d != n || e.sink.Count() != n {
			b.Fatalf("sink: %d messages, %d distinct", e.sink.Count(), d)
		}
		r, err := e.camp.Report(ctx, e.tenant, c.ID)
		if err != nil || r.HandedOff != int64(n) {
			b.Fatalf("report: %+v %v", r.Counts, err)
		}
		content := referenceContent(b, e, tmpl.ID)
		ref.add(referencePush(b, e, content, n))
		bare.add(bareReference(b, e, content, n))
		b.StartTimer()
	}
	msgs := float64(n * b.N)
	rate := msgs / secs
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(msgs/ref.secs, "ref-msgs/s")
	b.ReportMetric(rate/(msgs/ref.secs), "ratio")
	b.ReportMetric(msgs/bare.secs, "bare-msgs/s")
	b.ReportMetric(rate/(msgs/bare.secs), "ratio-bare")
	b.ReportMetric(peak/(1<<20), "peak-RSS-MB")
	b.ReportMetric(cpu/float64(b.N), "cpu-s")
	// CPU per message, in this process and in the sink's: on two shared
	// cores the rate cannot exceed 2 s / (both), whatever the client.
	b.ReportMetric(cpu/msgs*1e6, "cpu-us/msg")
	b.ReportMetric(sinkCPU/msgs*1e6, "sink-us/msg")
	ref.report(b, "ref", msgs)
	bare.report(b, "bare", msgs)
}

// pushCost is what a reference push took: wall seconds, this process's
// CPU seconds and the sink process's.
type pushCost struct{ secs, cpu, sinkCPU float64 }

func (c *pushCost) add(o pushCost) {
	c.secs, c.cpu, c.sinkCPU = c.secs+o.secs, c.cpu+o.cpu, c.sinkCPU+o.sinkCPU
}

// report gives the CPU per message of the client and of the sink.
func (c pushCost) report(b *testing.B, name string, msgs float64) {
	b.ReportMetric(c.cpu/msgs*1e6, name+"-cpu-us/msg")
	b.ReportMetric(c.sinkCPU/msgs*1e6, name+"-sink-us/msg")
}

// measurePush resets the sink, runs push, waits until the sink has n
// messages, and returns what it took.
func measurePush(b *testing.B, e *campaignEnv, n int, push func()) pushCost {
	e.sink.Reset()
	cpu0, sink0 := cpuSeconds(), e.sink.CPU()
	start := time.Now()
	push()
	if err := e.sink.WaitFor(n, time.Hour); err != nil {
		b.Fatal(err)
	}
	return pushCost{secs: time.Since(start).Seconds(), cpu: cpuSeconds() - cpu0, sinkCPU: e.sink.CPU() - sink0}
}

// newsletter creates the benchmark's 4.5 kB e-mail template.
func (e *campaignEnv) newsletter(b *testing.B) templates.Template {
	b.Helper()
	ctx := context.Background()
	fs, err := e.camp.FieldSet(ctx, e.tenant)
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := e.tmpl.Create(ctx, e.tenant, templates.Input{Name: "Newsletter", Channel: templates.ChannelEmail,
		Variants: map[string]templates.Variant{"en": {Subject: "Acme news for {{.contact.first_name}}", HTML: benchHTML()}}}, fs)
	if err != nil {
		b.Fatal(err)
	}
	return tmpl
}

// referenceContent renders the campaign's template once, for a contact
// like the audience's: the content of both references' messages.
func referenceContent(b *testing.B, e *campaignEnv, templateID string) router.Content {
	content, err := e.tmpl.Render(context.Background(), e.tenant, templateID, 0, "en", templates.Vars{Contact: templates.ContactFields{FirstName: "Reader1", LastName: "Number1",
		Locale: "en", TimeZone: "Europe/Paris"}, Links: templates.Links{Unsubscribe: "https://relais.example/u/ru1.eyJrIjoidW5zdWJzY3JpYmUifQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}.Map())
	if err != nil {
		b.Fatal(err)
	}
	return content
}

// bareReference pushes n messages of content, rendered once, with the bare
// SMTP client (bare_smtp_test.go) into the same sink, and returns what it
// took (from the first dial to the last message counted by the sink).
func bareReference(b *testing.B, e *campaignEnv, content router.Content, n int) pushCost {
	body, err := bareMessage(content)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.sink.CertPEM()) {
		b.Fatal("the sink's certificate")
	}
	return measurePush(b, e, n, func() {
		if err := barePush(context.Background(), "127.0.0.1:"+strconv.Itoa(e.sink.Port()), roots, body, n, bareConns()); err != nil {
			b.Fatal(err)
		}
	})
}

// referencePush pushes n pre-rendered messages of the campaign's size
// through the SMTP connector alone into the same sink, in batches of 1000
// with the engine's concurrency (8 batches at once), and returns what it
// took.
func referencePush(b *testing.B, e *campaignEnv, content router.Content, n int) pushCost {
	conn, err := registry.Open(registry.TypeSMTP, e.smtpCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	return measurePush(b, e, n, func() { connectorPush(b, e, conn, content, n) })
}

// connectorPush sends n messages of content through conn, 8 batches of
// 1000 at once.
func connectorPush(b *testing.B, e *campaignEnv, conn connectors.Connector, content router.Content, n int) {
	ctx := context.Background()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += 1000 {
		batch := make([]connectors.Message, 0, 1000)
		for i := lo; i < min(lo+1000, n); i++ {
			batch = append(batch, connectors.Message{Ref: fmt.Sprintf("ref-%d", i), TenantID: e.tenant, Channel: "email",
				To: fmt.Sprintf("reader.%08d@example.com", i), Subject: content.Subject, Text: content.Text, HTML: content.HTML, Headers: content.Headers})
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, o := range conn.Send(ctx, batch) {
				if o.Err != nil {
					b.Errorf("reference send: %v", o.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// sinkProcess is the SMTP sink (smtpsink, STARTTLS, keeping no message
// data) run in a child process (TestCampaignSinkProcess), so that the
// benchmark's peak RSS is Relais's alone: the sink keeps the headers of
// every message it receives. It reports its counts on its standard output.
type sinkProcess struct {
	port            int
	cert            []byte
	count, distinct atomic.Int64
	cpu             atomic.Uint64 // float64 bits: the sink process's CPU seconds at its last count
	stdin           io.WriteCloser
	mu              sync.Mutex
	changed         chan struct{}
}

func startSinkProcess(b *testing.B) *sinkProcess {
	b.Helper()
	in, out := startChild(b, "TestCampaignSinkProcess", "RELAIS_BENCH_SINK_CHILD")
	s := &sinkProcess{stdin: in, changed: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "SINK":
				s.port, _ = strconv.Atoi(f[1])
				cert, err := base64.StdEncoding.DecodeString(f[2])
				s.cert = cert
				ready <- err
			case len(f) >= 3 && f[0] == "COUNT":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				d, _ := strconv.ParseInt(f[2], 10, 64)
				if len(f) == 4 {
					c, _ := strconv.ParseFloat(f[3], 64)
					s.cpu.Store(math.Float64bits(c))
				}
				s.count.Store(n)
				s.distinct.Store(d)
				s.mu.Lock()
				close(s.changed)
				s.changed = make(chan struct{})
				s.mu.Unlock()
			}
		}
		ready <- fmt.Errorf("the sink process ended")
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	return s
}

func (s *sinkProcess) Port() int       { return s.port }
func (s *sinkProcess) CertPEM() []byte { return s.cert }
func (s *sinkProcess) Count() int      { return int(s.count.Load()) }
func (s *sinkProcess) Distinct() int   { return int(s.distinct.Load()) }

// CPU is the sink process's CPU seconds (user and system) when it last
// reported its count.
func (s *sinkProcess) CPU() float64 { return math.Float64frombits(s.cpu.Load()) }

// Reset makes the sink forget what it received.
func (s *sinkProcess) Reset() {
	_, _ = io.WriteString(s.stdin, "reset\n")
	for s.Count() != 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitFor waits until the sink has received n messages.
func (s *sinkProcess) WaitFor(n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if s.Count() >= n {
			return nil
		}
		select {
		case <-ch:
		case <-deadline:
			return fmt.Errorf("sink: %d messages after %s, want %d", s.Count(), timeout, n)
		}
	}
}

// TestCampaignSinkProcess is the sink process of the campaign benchmark
// (it runs only as that child): it prints its port and certificate, then
// its counts every 20 ms, and forgets its messages on "reset".
func TestCampaignSinkProcess(t *testing.T) {
	if os.Getenv("RELAIS_BENCH_SINK_CHILD") != "1" {
		t.Skip("the SMTP sink process of BenchmarkCampaign*")
	}
	sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSStartTLS, Discard: true})
	fmt.Printf("SINK %d %s\n", sink.Port(), base64.StdEncoding.EncodeToString(sink.CertPEM()))
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "reset" {
				sink.Reset()
			}
		}
		close(done)
	}()
	last := -1
	for {
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if n := sink.Count(); n != last {
			last = n
			fmt.Printf("COUNT %d %d %.4f\n", n, sink.DistinctMessageIDs(), cpuSeconds())
		}
	}
}

// BenchmarkCampaignSQLite: a campaign end to end on the embedded store.
func BenchmarkCampaignSQLite(b *testing.B) {
	benchCampaign(b, func(*testing.B) string { return "" })
}

// BenchmarkCampaignPostgres: the same on a throwaway PostgreSQL server
// sharing the two cores.
func BenchmarkCampaignPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchCampaign(b, func(b *testing.B) string { return srv.NewDatabase(b) })
}

// ingestRows is how many messages each ingestion run writes.
const ingestRows = 20_000

// ingestMessage is a transactional message of 1 kB.
func ingestMessage(i int) router.NewMessage {
	return router.NewMessage{Channel: "email", To: fmt.Sprintf("customer%06d@example.com", i), IdempotencyKey: fmt.Sprintf("order-%06d", i),
		Content: router.Content{Subject: "Your order " + strconv.Itoa(i), Text: strings.Repeat("Thank you for your order. ", 40)}}
}

// createRawMessages makes the reference tables: the columns and indexes of
// the messages table (its primary key, its idempotency key's unique index,
// the queue's, campaign's and provider's indexes, and the three indexes
// migrations 00013 and 00015 added to messages), without row-level
// security, change-log triggers, events or audit: bench_raw_messages; and
// the first reference, without those three indexes (created before them):
// bench_raw5_messages, kept beside for comparison.
func createRawMessages(b *testing.B, db *store.DB) {
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		for _, tbl := range []string{"bench_raw_messages", "bench_raw5_messages"} {
			for i, q := range []string{`CREATE TABLE bench_raw_messages (tenant_id TEXT NOT NULL, id TEXT NOT NULL, shard INTEGER NOT NULL,
			idem_key TEXT, campaign_id TEXT, contact_id TEXT, channel TEXT NOT NULL, recipient TEXT NOT NULL, content TEXT NOT NULL, state TEXT NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0, use_secondary BOOLEAN NOT NULL DEFAULT FALSE, due_at BIGINT NOT NULL, fence BIGINT NOT NULL DEFAULT 0,
			node TEXT NOT NULL DEFAULT '', connector_id TEXT NOT NULL DEFAULT '', provider_ref TEXT NOT NULL DEFAULT '', last_error TEXT NOT NULL DEFAULT '',
			accepted_at BIGINT NOT NULL, sent_at BIGINT, delivered_at BIGINT, updated_at BIGINT NOT NULL,
			PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, idem_key))`,
				`CREATE INDEX bench_raw_due ON bench_raw_messages (shard, state, due_at)`,
				`CREATE INDEX bench_raw_campaign ON bench_raw_messages (tenant_id, campaign_id, state)`,
				`CREATE INDEX bench_raw_provider ON bench_raw_messages (tenant_id, connector_id, provider_ref)`,
				`CREATE INDEX bench_raw_accepted ON bench_raw_messages (accepted_at)`,
				`CREATE INDEX bench_raw_sent ON bench_raw_messages (sent_at) WHERE sent_at IS NOT NULL`,
				`CREATE INDEX bench_raw_tenant_accepted ON bench_raw_messages (tenant_id, accepted_at)`} {
				if tbl != "bench_raw_messages" && i > 3 {
					break
				}
				if _, err := p.Exec(context.Background(), strings.ReplaceAll(q, "bench_raw_", strings.TrimSuffix(tbl, "messages"))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// rawIngest inserts the same rows in clear into the plain table, per
// transactions of perTx rows (multi-row statements of up to 500 rows).
func rawIngest(b *testing.B, e *campaignEnv, table string, offset, perTx, rows int) float64 {
	start := time.Now()
	for lo := 0; lo < rows; lo += perTx {
		if err := rawTx(e, table, offset, lo, min(lo+perTx, rows)); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start).Seconds()
}

// rawIngestConcurrent inserts rows one per transaction from workers
// goroutines at once (the concurrency of benchIngest's concurrent callers).
func rawIngestConcurrent(b *testing.B, e *campaignEnv, offset, rows, workers int) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < rows; i = int(next.Add(1) - 1) {
				if err := rawTx(e, "bench_raw_messages", offset, i, i+1); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start).Seconds()
}

// rawTx inserts rows lo..hi-1 into table in one transaction.
func rawTx(e *campaignEnv, table string, offset, lo, hi int) error {
	ctx := context.Background()
	sqlite := e.db.Dialect() == store.SQLite
	return e.db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
		now := time.Now().UnixMicro()
		for s := lo; s < hi; s += 500 {
			var q strings.Builder
			var args []any
			ph := func(v any) string {
				args = append(args, v)
				if sqlite {
					return "?"
				}
				return "$" + strconv.Itoa(len(args)+1)
			}
			q.WriteString(`INSERT INTO ` + table + ` (tenant_id, id, shard, idem_key, channel, recipient, content, state, due_at, accepted_at, updated_at) VALUES `)
			for i := s; i < min(s+500, hi); i++ {
				m := ingestMessage(offset + i)
				body, _ := json.Marshal(m.Content)
				if i > s {
					q.WriteString(", ")
				}
				id := fmt.Sprintf("raw-%d-%d", offset, i)
				q.WriteString("($1, " + ph(id) + ", " + ph(router.ShardOf(e.tenant, id)) + ", " + ph(m.IdempotencyKey) + ", " + ph(m.Channel) + ", " +
					ph(m.To) + ", " + ph(string(body)) + ", 'queued', " + ph(now) + ", " + ph(now) + ", " + ph(now) + ")")
			}
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// ingestCallers is how many callers submit messages one per call at once
// in the concurrent one-by-one measure (an API server's concurrent
// requests); the reference inserts from as many goroutines.
const ingestCallers = 16

// ingestRounds alternates the reference and the measured path this many
// times; the ratios reported are the medians of the rounds' ratios (the
// machine's other work changes between rounds, not within a pair).
const ingestRounds = 5

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func benchIngest(b *testing.B, url func(b *testing.B) string) {
	ctx := context.Background()
	var raw1, raw1old, accept1, raw1c, accept1c, rawBatch, rawBatchOld, enqueue, acceptBatch []float64
	// CPU seconds (user + system) of this process and of the processes it
	// started (the PostgreSQL server and its backends) in the same phases:
	// their ratio holds when other work on the machine makes the
	// wall-clock ratios swing.
	var cpuRaw1, cpuAccept1, cpuRawBatch, cpuAcceptBatch []float64
	cpuOf := func(fn func()) float64 {
		c := cpuSeconds() + childCPUSecs()
		fn()
		return cpuSeconds() + childCPUSecs() - c
	}
	rows := ingestRows / 4 // one by one is slow: a quarter of the rows
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		e := openCampaignEnv(b, url(b))
		// For comparison: every Accept call in a transaction of its own.
		e.router.NoGroupCommit = os.Getenv("RELAIS_BENCH_NO_GROUP_COMMIT") == "1"
		createRawMessages(b, e.db)
		b.StartTimer()
		for r := 0; r < ingestRounds; r++ {
			base := r * 10 * ingestRows
			cpuRaw1 = append(cpuRaw1, cpuOf(func() { raw1 = append(raw1, rawIngest(b, e, "bench_raw_messages", base, 1, rows)) }))
			raw1old = append(raw1old, rawIngest(b, e, "bench_raw5_messages", base, 1, rows))
			start := time.Now()
			cpuAccept1 = append(cpuAccept1, cpuOf(func() {
				for i := 0; i < rows; i++ {
					if _, err := e.router.Accept(ctx, e.tenant, []router.NewMessage{ingestMessage(base + i)}); err != nil {
						b.Fatal(err)
					}
				}
			}))
			accept1 = append(accept1, time.Since(start).Seconds())
			raw1c = append(raw1c, rawIngestConcurrent(b, e, base+3*ingestRows, rows, ingestCallers))
			start = time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < ingestCallers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1) - 1); i < rows; i = int(next.Add(1) - 1) {
						if _, err := e.router.Accept(ctx, e.tenant, []router.NewMessage{ingestMessage(base + 3*ingestRows + i)}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			accept1c = append(accept1c, time.Since(start).Seconds())
			cpuRawBatch = append(cpuRawBatch, cpuOf(func() {
				rawBatch = append(rawBatch, rawIngest(b, e, "bench_raw_messages", base+ingestRows, 1000, ingestRows))
			}))
			rawBatchOld = append(rawBatchOld, rawIngest(b, e, "bench_raw5_messages", base+ingestRows, 1000, ingestRows))
			batch := make([]router.NewMessage, 0, ingestRows)
			for i := 0; i < ingestRows; i++ {
				batch = append(batch, ingestMessage(base+ingestRows+i))
			}
			start = time.Now()
			if n, err := e.router.Enqueue(ctx, e.tenant, batch); err != nil || n != len(batch) {
				b.Fatalf("enqueue: %d %v", n, err)
			}
			enqueue = append(enqueue, time.Since(start).Seconds())
			start = time.Now()
			cpuAcceptBatch = append(cpuAcceptBatch, cpuOf(func() {
				for lo := 0; lo < ingestRows; lo += 1000 {
					part := make([]router.NewMessage, 0, 1000)
					for i := lo; i < lo+1000; i++ {
						part = append(part, ingestMessage(base+2*ingestRows+i))
					}
					if _, err := e.router.Accept(ctx, e.tenant, part); err != nil {
						b.Fatal(err)
					}
				}
			}))
			acceptBatch = append(acceptBatch, time.Since(start).Seconds())
		}
	}
	ratios := func(ref, got []float64) float64 {
		r := make([]float64, len(ref))
		for i := range ref {
			r[i] = ref[i] / got[i]
		}
		return median(r)
	}
	rate := func(n int, secs []float64) float64 { return float64(n) / median(secs) }
	b.ReportMetric(rate(rows, raw1), "raw1-rows/s")
	b.ReportMetric(rate(rows, accept1), "accept1-msgs/s")
	b.ReportMetric(ratios(raw1, accept1), "ratio1")
	b.ReportMetric(ratios(raw1old, accept1), "ratio1-5ix")
	b.ReportMetric(rate(rows, raw1c), "raw1c-rows/s")
	b.ReportMetric(rate(rows, accept1c), "accept1c-msgs/s")
	b.ReportMetric(ratios(raw1c, accept1c), "ratio1c")
	b.ReportMetric(rate(ingestRows, rawBatch), "rawbatch-rows/s")
	b.ReportMetric(rate(ingestRows, enqueue), "enqueue-msgs/s")
	b.ReportMetric(ratios(rawBatch, enqueue), "ratio-enqueue")
	b.ReportMetric(rate(ingestRows, acceptBatch), "acceptbatch-msgs/s")
	b.ReportMetric(ratios(rawBatch, acceptBatch), "ratio-acceptbatch")
	// The same ratios by CPU time (see cpuOf).
	b.ReportMetric(ratios(cpuRaw1, cpuAccept1), "cpuratio1")
	b.ReportMetric(ratios(cpuRawBatch, cpuAcceptBatch), "cpuratio-acceptbatch")
	// Against the first reference (five indexes): for comparison with the
	// figures taken before.
	b.ReportMetric(rate(ingestRows, rawBatchOld), "rawbatch5ix-rows/s")
	b.ReportMetric(ratios(rawBatchOld, enqueue), "ratio-enqueue-5ix")
	b.ReportMetric(ratios(rawBatchOld, acceptBatch), "ratio-acceptbatch-5ix")
}

// BenchmarkIngestSQLite: ingestion on the embedded store.
func BenchmarkIngestSQLite(b *testing.B) {
	benchIngest(b, func(*testing.B) string { return "" })
}

// BenchmarkIngestPostgres: ingestion on PostgreSQL.
func BenchmarkIngestPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchIngest(b, func(b *testing.B) string { return srv.NewDatabase(b) })
}

// BenchmarkCampaignReferences: the campaign benchmark's two references
// alone (no campaign), alternated three times: the SMTP connector, and the
// bare SMTP client, pushing the campaign's message into the sink process.
// For work on the connector's cost.
func BenchmarkCampaignReferences(b *testing.B) {
	n := benchCampaignSize()
	var ref, bare pushCost
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := openCampaignEnv(b, "")
		tmpl := e.newsletter(b)
		content := referenceContent(b, e, tmpl.ID)
		b.StartTimer()
		for r := 0; r < 3; r++ {
			ref.add(referencePush(b, e, content, n))
			bare.add(bareReference(b, e, content, n))
		}
	}
	msgs := float64(3 * n * b.N)
	b.ReportMetric(msgs/ref.secs, "ref-msgs/s")
	b.ReportMetric(msgs/bare.secs, "bare-msgs/s")
	b.ReportMetric(bare.secs/ref.secs, "ref/bare")
	ref.report(b, "ref", msgs)
	bare.report(b, "bare", msgs)
}
