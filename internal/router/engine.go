package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// OpenFunc opens a connector from its kind and decrypted configuration
// (connectors.Open in production).
type OpenFunc func(kind string, config json.RawMessage) (connectors.Connector, error)

// EngineOptions tune an Engine. Zero values take the defaults.
type EngineOptions struct {
	// Node names this process; a fresh random id by default.
	Node string
	// LeaseTTL is how long a shard lease lasts without renewal (15 s).
	LeaseTTL time.Duration
	// Batch is how many messages one claim takes (500).
	Batch int
	// Poll is the idle wait between claims (250 ms); Service.Wake cuts it.
	Poll time.Duration
	// MaxAttempts before a message is dead-lettered as failed (8).
	MaxAttempts int
	// BaseBackoff is the first retry delay (30 s), doubled each attempt
	// with +-20% jitter, capped by MaxBackoff (1 h).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Workers is how many connector batches run at once (8).
	Workers int
	// HandOffs is how many claimed batches are handed off at once (1).
	// More keep the connector's connections busy between batches (the
	// next batch is read and decrypted while the last messages of one are
	// with the connector) at the cost of memory: each batch in hand holds
	// its decoded contents (about 7 MB for 500 emails of 4.5 kB), and more
	// messages are left in doubt when a node dies.
	HandOffs int
	Logger   *slog.Logger
	Now      func() time.Time
	// Registerer receives the router's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// Suppress, when set, is asked just before hand-off about every
	// message that has a contact: a true answer (consent withdrawn,
	// unsubscribed, blocklisted since the message was accepted) marks the
	// message suppressed with the reason instead of sending it. campaignID
	// is empty for a transactional message.
	Suppress func(ctx context.Context, tenantID, contactID, channel, campaignID string) (bool, string, error)
	// SuppressLoad, when set, is called once per tenant of a claimed
	// batch, before Suppress is asked about the batch's messages, with
	// the contact, channel and campaign of each of them: a Suppress that
	// answers a whole batch from one read (campaigns.Suppressor) reads it
	// here instead of looking the batch up again. An error is logged; the
	// per-message questions decide.
	SuppressLoad func(ctx context.Context, tenantID string, list []ContactChannel) error
}

// Engine works the queue: it holds shard leases, claims due messages,
// hands them to connectors and records the outcomes.
type Engine struct {
	db      *store.DB
	keyring *tenants.Keyring
	open    OpenFunc
	o       EngineOptions
	log     *slog.Logger
	wake    chan struct{}
	m       *engineMetrics

	mu     sync.Mutex
	owned  map[int]int64 // shard -> fence
	conns  map[string]*connEntry
	routes map[string]routeEntry
}

type connEntry struct {
	c       connectors.Connector
	kind    string
	updated int64
	limiter *rate.Limiter
}

type routeEntry struct {
	primary, secondary string
	at                 time.Time
}

type engineMetrics struct {
	outcomes *prometheus.CounterVec
	handoff  prometheus.Histogram
	depth    prometheus.Gauge
	oldest   prometheus.Gauge
	leases   prometheus.Gauge
	errors   *prometheus.CounterVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_router_messages_total",
			Help: "Messages that reached a state, by state and channel."}, []string{"state", "channel"}),
		handoff: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "relais_router_handoff_seconds",
			Help: "Time from acceptance to the connector's answer.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		depth:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_router_queue_depth", Help: "Messages queued (all shards)."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_router_oldest_due_seconds", Help: "Age of the oldest due message."}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_router_leases_held", Help: "Shard leases this node holds."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_router_connector_errors_total",
			Help: "Connector errors, by kind and class."}, []string{"kind", "class"}),
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.handoff, m.depth, m.oldest, m.leases, m.errors)
	}
	return m
}

// NewEngine returns an engine; call Run.
func NewEngine(db *store.DB, keyring *tenants.Keyring, open OpenFunc, o EngineOptions) *Engine {
	if o.Node == "" {
		o.Node = uuid.NewString()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 30 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.HandOffs <= 0 {
		o.HandOffs = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = db.Now
	}
	return &Engine{db: db, keyring: keyring, open: open, o: o, log: o.Logger, wake: make(chan struct{}, 1),
		m: newEngineMetrics(o.Registerer), owned: map[int]int64{}, conns: map[string]*connEntry{}, routes: map[string]routeEntry{}}
}

// Node is this engine's node id.
func (e *Engine) Node() string { return e.o.Node }

// Wake makes the engine claim at once (new messages are due).
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends, then releases its leases so that other nodes
// take over at once.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.ensureShards(ctx); err != nil {
		return err
	}
	// A pipeline of three stages: this loop claims, HandOffs hand-off
	// goroutines hand off, a recorder records. The queues between them are
	// unbuffered, so a batch is claimed while the previous ones are handed
	// off and the one before is recorded: at most one batch claimed and
	// not yet handed off, HandOffs being handed off and one handed off
	// and not yet recorded. The hand-offs and the recorder finish their work when ctx
	// ends (outcomes of messages the connectors took are worth writing),
	// then the leases are released. Lease maintenance waits until every
	// claimed batch is recorded: when this node takes back a shard whose
	// lease lapsed (a slow cycle), recovery must not find its own
	// hand-offs still in flight and mark them unknown.
	handQ := make(chan []claimed)
	recordQ := make(chan []outcome)
	handed := make(chan struct{})
	recorded := make(chan struct{})
	var pending sync.WaitGroup
	go func() {
		defer close(recorded)
		for res := range recordQ {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			e.recordLogged(rctx, res)
			cancel()
			pending.Done()
		}
	}()
	var handers sync.WaitGroup
	for range e.o.HandOffs {
		handers.Go(func() {
			for batch := range handQ {
				recordQ <- e.dispatch(ctx, batch)
			}
		})
	}
	go func() {
		handers.Wait()
		close(handed)
	}()
	defer func() {
		close(handQ)
		<-handed
		close(recordQ)
		<-recorded
		e.shutdown()
	}()
	var lastLease time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(lastLease) >= e.o.LeaseTTL/3 {
			pending.Wait()
			if err := e.maintainLeases(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("shard leases", "error", err)
			}
			lastLease = time.Now()
		}
		batch, err := e.claimOwned(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Error("router claim", "error", err)
		}
		if len(batch) > 0 {
			pending.Add(1)
			handQ <- batch
			continue // there may be more due right now
		}
		timer := time.NewTimer(e.o.Poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-e.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func (e *Engine) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.mu.Lock()
	shards := make([]int, 0, len(e.owned))
	for s := range e.owned {
		shards = append(shards, s)
	}
	e.owned = map[int]int64{}
	conns := e.conns
	e.conns = map[string]*connEntry{}
	e.mu.Unlock()
	_ = e.db.Platform(ctx, func(p *store.PlatformTx) error {
		for _, s := range shards {
			if _, err := p.Exec(ctx, `UPDATE shard_leases SET expires_at = 0 WHERE shard = $1 AND owner = $2`, s, e.o.Node); err != nil {
				return err
			}
		}
		_, err := p.Exec(ctx, `DELETE FROM router_nodes WHERE id = $1`, e.o.Node)
		return err
	})
	for _, c := range conns {
		_ = c.c.Close()
	}
	e.m.leases.Set(0)
}

func (e *Engine) ensureShards(ctx context.Context) error {
	return e.db.Platform(ctx, func(p *store.PlatformTx) error {
		for s := 0; s < Shards; s++ {
			if _, err := p.Exec(ctx, `INSERT INTO shard_leases (shard, owner, fence, expires_at) VALUES ($1, '', 0, 0) ON CONFLICT (shard) DO NOTHING`, s); err != nil {
				return fmt.Errorf("router: create shard %d: %w", s, err)
			}
		}
		return nil
	})
}

// Owned returns the shards this node holds (for tests and metrics).
func (e *Engine) Owned() map[int]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[int]int64, len(e.owned))
	for k, v := range e.owned {
		out[k] = v
	}
	return out
}

// maintainLeases heartbeats, renews the shards held, takes free ones up to
// this node's share and gives back extras when other nodes joined.
func (e *Engine) maintainLeases(ctx context.Context) error {
	now := e.o.Now()
	exp := store.Micros(now.Add(e.o.LeaseTTL))
	var acquired map[int]int64
	err := e.db.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `INSERT INTO router_nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2`, e.o.Node, store.Micros(now)); err != nil {
			return err
		}
		if _, err := p.Exec(ctx, `DELETE FROM router_nodes WHERE heartbeat_at < $1`, store.Micros(now.Add(-3*e.o.LeaseTTL))); err != nil {
			return err
		}
		var alive int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM router_nodes WHERE heartbeat_at >= $1`, store.Micros(now.Add(-2*e.o.LeaseTTL))).Scan(&alive); err != nil {
			return err
		}
		target := (Shards + max(alive, 1) - 1) / max(alive, 1)
		// Renew what we hold; forget what we lost.
		rows, err := p.Query(ctx, `UPDATE shard_leases SET expires_at = $1 WHERE owner = $2 AND expires_at > $3 RETURNING shard, fence`, exp, e.o.Node, store.Micros(now))
		if err != nil {
			return err
		}
		held := map[int]int64{}
		for rows.Next() {
			var s int
			var f int64
			if err := rows.Scan(&s, &f); err != nil {
				_ = rows.Close()
				return err
			}
			held[s] = f
		}
		if err := rows.Close(); err != nil {
			return err
		}
		// Give back extras (another node joined), highest shards first.
		for len(held) > target {
			hi := -1
			for s := range held {
				hi = max(hi, s)
			}
			if _, err := p.Exec(ctx, `UPDATE shard_leases SET expires_at = 0 WHERE shard = $1 AND owner = $2`, hi, e.o.Node); err != nil {
				return err
			}
			delete(held, hi)
		}
		// Take free or expired shards up to the target, from a random start
		// so that nodes do not all race for the same ones.
		acquired = map[int]int64{}
		start := rand.IntN(Shards) // #nosec G404 -- spreading load, not security
		for i := 0; i < Shards && len(held) < target; i++ {
			s := (start + i) % Shards
			if _, ok := held[s]; ok {
				continue
			}
			var f int64
			err := p.QueryRow(ctx, `UPDATE shard_leases SET owner = $1, fence = fence + 1, expires_at = $2 WHERE shard = $3 AND expires_at <= $4 RETURNING fence`,
				e.o.Node, exp, s, store.Micros(now)).Scan(&f)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			held[s], acquired[s] = f, f
		}
		e.mu.Lock()
		e.owned = held
		e.mu.Unlock()
		e.m.leases.Set(float64(len(held)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("router: leases: %w", err)
	}
	for s, f := range acquired {
		if err := e.recover(ctx, s, f); err != nil {
			e.log.Error("router: recovering in-doubt messages", "shard", s, "error", err)
		}
	}
	return nil
}

// recover settles the hand-offs a previous owner of the shard left in
// doubt: retried with the same reference where the connector deduplicates,
// marked unknown otherwise.
func (e *Engine) recover(ctx context.Context, shard int, fence int64) error {
	type doubt struct {
		tenant, id, connector, channel string
		useSecondary                   bool
	}
	var list []doubt
	err := e.db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, id, connector_id, channel, use_secondary FROM messages WHERE shard = $1 AND state = 'sending' AND fence < $2`, shard, fence)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var d doubt
			if err := rows.Scan(&d.tenant, &d.id, &d.connector, &d.channel, &d.useSecondary); err != nil {
				return err
			}
			list = append(list, d)
		}
		return rows.Err()
	})
	if err != nil || len(list) == 0 {
		return err
	}
	// The claim was routed as dispatch routes it: the same rule finds the
	// connector a hand-off may have reached.
	for i, d := range list {
		if d.connector == "" {
			if c, err := e.route(ctx, claimed{tenant: d.tenant, channel: d.channel, useSecondary: d.useSecondary}); err == nil {
				list[i].connector = c
			}
		}
	}
	// Ask the connectors first: on SQLite a second transaction cannot run
	// inside the one that records the result.
	idem := make([]bool, len(list))
	for i, d := range list {
		if ce, err := e.connector(ctx, d.tenant, d.connector); err == nil {
			idem[i] = ce.c.Capabilities().Idempotent
		}
	}
	now := store.Micros(e.o.Now())
	return e.db.Platform(ctx, func(p *store.PlatformTx) error {
		for i, d := range list {
			idempotent := idem[i]
			state, kind := StateUnknown, "in_doubt"
			if idempotent {
				state, kind = StateQueued, "recovered"
			}
			res, err := p.Exec(ctx, `UPDATE messages SET state = $1, due_at = $2, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND state = 'sending' AND fence < $5`,
				state, now, d.tenant, d.id, fence)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			detail, _ := json.Marshal(map[string]any{"reason": "the node handing it off stopped before recording the outcome", "retry_same_reference": idempotent})
			if _, err := p.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)`,
				d.tenant, d.id, now, kind, string(detail)); err != nil {
				return err
			}
			if state == StateUnknown {
				e.m.outcomes.WithLabelValues(StateUnknown, "").Inc()
			}
		}
		return nil
	})
}

// claimed is a message taken for hand-off.
type claimed struct {
	tenant, id, channel string
	shard               int
	fence               int64
	attempts            int
	useSecondary        bool
	to                  []byte
	accepted            int64
	contact             string
	campaign            string
}

// Step claims one batch of due messages from the shards held, hands them
// off and records the outcomes. It returns how many it claimed.
func (e *Engine) Step(ctx context.Context) (int, error) {
	return e.step(ctx, func(res []outcome) { e.recordLogged(ctx, res) })
}

// step claims a batch, hands it off and passes the outcomes to record.
func (e *Engine) step(ctx context.Context, record func([]outcome)) (int, error) {
	batch, err := e.claimOwned(ctx)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	record(e.dispatch(ctx, batch))
	return len(batch), nil
}

// claimOwned claims a batch if this node holds shards.
func (e *Engine) claimOwned(ctx context.Context) ([]claimed, error) {
	e.mu.Lock()
	n := len(e.owned)
	e.mu.Unlock()
	if n == 0 {
		return nil, nil
	}
	return e.claim(ctx)
}

// recordLogged records outcomes; on failure the claims stay in 'sending'
// and the next owner of each shard settles them (retry with the same
// reference, or unknown).
func (e *Engine) recordLogged(ctx context.Context, results []outcome) {
	if err := e.record(ctx, results); err != nil {
		e.log.Error("router: recording outcomes failed; the messages are left in doubt", "error", err, "count", len(results))
	}
}

func (e *Engine) claim(ctx context.Context) ([]claimed, error) {
	now := store.Micros(e.o.Now())
	var out []claimed
	err := e.db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `UPDATE messages SET state = 'sending', attempts = attempts + 1, node = $1, updated_at = $2,
				fence = (SELECT l.fence FROM shard_leases l WHERE l.shard = messages.shard)
			WHERE state = 'queued' AND (tenant_id, id) IN (
				SELECT m.tenant_id, m.id FROM messages m JOIN shard_leases l ON l.shard = m.shard
				WHERE l.owner = $1 AND l.expires_at > $2 AND m.state = 'queued' AND m.due_at <= $2
				ORDER BY m.due_at LIMIT $3)
			RETURNING tenant_id, id, channel, shard, fence, attempts, use_secondary, recipient_enc, accepted_at, COALESCE(contact_id, ''), COALESCE(campaign_id, '')`,
			e.o.Node, now, e.o.Batch)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var c claimed
			if err := rows.Scan(&c.tenant, &c.id, &c.channel, &c.shard, &c.fence, &c.attempts, &c.useSecondary, &c.to, &c.accepted, &c.contact, &c.campaign); err != nil {
				return err
			}
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		evs := make([]messageEvent, len(out))
		for i, c := range out {
			evs[i] = messageEvent{tenant: c.tenant, id: c.id, kind: "attempt", detail: `{"attempt":` + strconv.Itoa(c.attempts) + `}`}
		}
		return insertEvents(ctx, p, evs, now)
	})
	return out, err
}

// messageEvent is one event of a message written by the engine.
type messageEvent struct{ tenant, id, kind, detail string }

// insertEvents writes events, all at the same time, in multi-row
// statements ("?" placeholders on SQLite, which resolves "$N" names by a
// linear search).
func insertEvents(ctx context.Context, p *store.PlatformTx, evs []messageEvent, at int64) error {
	sqlite := p.Dialect() == store.SQLite
	const per = 1000
	for start := 0; start < len(evs); start += per {
		chunk := evs[start:min(start+per, len(evs))]
		var sb strings.Builder
		sb.Grow(len(chunk)*40 + 100)
		m := newMarks(sqlite, 0, len(chunk)*5+1)
		mark := m.mark
		sb.WriteString(`INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES `)
		atMark := ""
		for i, ev := range chunk {
			if i > 0 {
				sb.WriteString(", ")
			}
			// Marks in the text's order: "?" is positional.
			sb.WriteString("(" + mark(ev.tenant) + ", " + mark(ev.id) + ", ")
			if sqlite || atMark == "" {
				atMark = mark(at)
			}
			sb.WriteString(atMark + ", " + mark(ev.kind) + ", " + mark(ev.detail) + ")")
		}
		if _, err := p.ExecBulk(ctx, sb.String(), m.args...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

// outcome is the result of one hand-off.
type outcome struct {
	claimed
	connector   string
	kind        string
	idempotent  bool
	providerRef string
	err         error
	noRoute     bool
	suppressed  string
}

// dispatch asks the pre-hand-off check, routes and hands off a claimed
// batch, and returns the outcomes.
func (e *Engine) dispatch(ctx context.Context, batch []claimed) []outcome {
	type key struct{ tenant, connector string }
	groups := map[key][]claimed{}
	var results []outcome
	if e.o.Suppress != nil && e.o.SuppressLoad != nil {
		byTenant := map[string][]ContactChannel{}
		for _, c := range batch {
			if c.contact != "" {
				byTenant[c.tenant] = append(byTenant[c.tenant], ContactChannel{ContactID: c.contact, Channel: c.channel, CampaignID: c.campaign})
			}
		}
		for t, list := range byTenant {
			if err := e.o.SuppressLoad(ctx, t, list); err != nil {
				e.log.Warn("router: consent check read", "error", err)
			}
		}
	}
	for _, c := range batch {
		if c.contact != "" && e.o.Suppress != nil {
			stop, reason, err := e.o.Suppress(ctx, c.tenant, c.contact, c.channel, c.campaign)
			if err != nil {
				results = append(results, outcome{claimed: c, err: connectors.Temporary(fmt.Errorf("consent check: %w", err))})
				continue
			}
			if stop {
				results = append(results, outcome{claimed: c, suppressed: reason})
				continue
			}
		}
		conn, err := e.route(ctx, c)
		if err != nil {
			results = append(results, outcome{claimed: c, err: err, noRoute: true})
			continue
		}
		k := key{c.tenant, conn}
		groups[k] = append(groups[k], c)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, e.o.Workers)
	for k, list := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res := e.handOff(ctx, k.tenant, k.connector, list)
			mu.Lock()
			results = append(results, res...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

func (e *Engine) route(ctx context.Context, c claimed) (string, error) {
	k := c.tenant + "|" + c.channel
	e.mu.Lock()
	r, ok := e.routes[k]
	e.mu.Unlock()
	if !ok || time.Since(r.at) > 5*time.Second {
		var secondary *string
		err := e.db.Tenant(c.tenant).Snapshot(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT primary_id, secondary_id FROM routes WHERE tenant_id = $1 AND channel = $2`, c.channel).Scan(&r.primary, &secondary)
		})
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("%w %q", ErrNoRoute, c.channel)
		}
		if err != nil {
			return "", err
		}
		r.secondary = ""
		if secondary != nil {
			r.secondary = *secondary
		}
		r.at = time.Now()
		e.mu.Lock()
		e.routes[k] = r
		e.mu.Unlock()
	}
	if c.useSecondary && r.secondary != "" {
		return r.secondary, nil
	}
	return r.primary, nil
}

// connector returns the opened connector of a tenant, reopening it when its
// configuration changed.
func (e *Engine) connector(ctx context.Context, tenant, id string) (*connEntry, error) {
	var kind string
	var cfg []byte
	var updated int64
	var status string
	// A read transaction: it waits for no writer on SQLite.
	err := e.db.Tenant(tenant).Snapshot(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT kind, updated_at, status, config_enc FROM connectors WHERE tenant_id = $1 AND id = $2`, id).Scan(&kind, &updated, &status, &cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", id, err)
	}
	if status != "active" {
		return nil, connectors.Temporary(fmt.Errorf("connector %q is disabled", id))
	}
	k := tenant + "|" + id
	e.mu.Lock()
	ce, ok := e.conns[k]
	e.mu.Unlock()
	if ok && ce.updated == updated {
		return ce, nil
	}
	c, err := e.keyring.Crypto(ctx, tenant)
	if err != nil {
		return nil, err
	}
	plain, err := c.Open("connector.config", cfg)
	if err != nil {
		return nil, fmt.Errorf("connector %q: decrypt configuration: %w", id, err)
	}
	conn, err := e.open(kind, plain)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("connector %q: %w", id, err))
	}
	lim := rate.NewLimiter(rate.Inf, 0)
	if r := conn.Capabilities().RatePerSecond; r > 0 {
		lim = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
	}
	ce = &connEntry{c: conn, kind: kind, updated: updated, limiter: lim}
	e.mu.Lock()
	if old, ok := e.conns[k]; ok {
		_ = old.c.Close()
	}
	e.conns[k] = ce
	e.mu.Unlock()
	return ce, nil
}

func (e *Engine) handOff(ctx context.Context, tenant, connID string, list []claimed) []outcome {
	out := make([]outcome, 0, len(list))
	fail := func(err error) []outcome {
		for _, c := range list {
			out = append(out, outcome{claimed: c, connector: connID, err: err})
		}
		return out
	}
	ce, err := e.connector(ctx, tenant, connID)
	if err != nil {
		return fail(err)
	}
	crypto, err := e.keyring.Crypto(ctx, tenant)
	if err != nil {
		return fail(err)
	}
	contents, err := e.contents(ctx, tenant, list)
	if err != nil {
		return fail(connectors.Temporary(err))
	}
	// The batch goes out in parts, each decrypted and decoded by its own
	// goroutine and handed to the connector as soon as it is ready: the
	// connector's connections start on the first part while the others
	// are still being decoded (on every core).
	parts := min(handOffParts, len(list))
	per := (len(list) + parts - 1) / parts
	var mu sync.Mutex
	var wg sync.WaitGroup
	for lo := 0; lo < len(list); lo += per {
		part := list[lo:min(lo+per, len(list))]
		wg.Go(func() {
			res := e.handOffPart(ctx, ce, crypto, tenant, connID, part, contents)
			mu.Lock()
			out = append(out, res...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// handOffParts is how many parts handOff splits a batch into.
const handOffParts = 4

// handOffPart decrypts and decodes the messages of part (contents holds
// their sealed content by id; it is only read) and hands them to the
// connector; it returns one outcome per message.
func (e *Engine) handOffPart(ctx context.Context, ce *connEntry, crypto *tenants.Crypto, tenant, connID string, list []claimed, contents map[string][]byte) []outcome {
	out := make([]outcome, 0, len(list))
	msgs := make([]connectors.Message, 0, len(list))
	byRef := make(map[string]claimed, len(list))
	for _, c := range list {
		sealed, ok := contents[c.id]
		if !ok {
			out = append(out, outcome{claimed: c, connector: connID, kind: ce.kind, err: connectors.Permanent(errors.New("the message has no content"))})
			continue
		}
		to, err := crypto.OpenString("message.to", c.to)
		if err != nil {
			out = append(out, outcome{claimed: c, connector: connID, kind: ce.kind, err: connectors.Permanent(fmt.Errorf("decrypt recipient: %w", err))})
			continue
		}
		raw, err := crypto.Open("message.content", sealed)
		if err != nil {
			out = append(out, outcome{claimed: c, connector: connID, kind: ce.kind, err: connectors.Permanent(fmt.Errorf("decrypt content: %w", err))})
			continue
		}
		var ct Content
		if err := decodeContent(raw, &ct); err != nil {
			out = append(out, outcome{claimed: c, connector: connID, kind: ce.kind, err: connectors.Permanent(fmt.Errorf("content: %w", err))})
			continue
		}
		msgs = append(msgs, connectors.Message{Ref: c.id, TenantID: tenant, Channel: c.channel, To: to, From: ct.From, ReplyTo: ct.ReplyTo,
			Subject: ct.Subject, Text: ct.Text, HTML: ct.HTML, Headers: ct.Headers, Attempt: c.attempts})
		byRef[c.id] = c
	}
	maxBatch := max(ce.c.Capabilities().MaxBatch, 1)
	for start := 0; start < len(msgs); start += maxBatch {
		chunk := msgs[start:min(start+maxBatch, len(msgs))]
		if err := ce.limiter.WaitN(ctx, min(len(chunk), max(ce.limiter.Burst(), 1))); err != nil && !errors.Is(err, context.Canceled) && ce.limiter.Limit() != rate.Inf {
			e.log.Warn("router: rate limiter", "error", err)
		}
		res := ce.c.Send(ctx, chunk)
		for i, m := range chunk {
			o := outcome{claimed: byRef[m.Ref], connector: connID, kind: ce.kind, idempotent: ce.c.Capabilities().Idempotent}
			if i < len(res) {
				o.providerRef, o.err = res[i].ProviderRef, res[i].Err
			} else {
				o.err = connectors.Temporary(errors.New("the connector gave no answer for this message"))
			}
			out = append(out, o)
		}
	}
	return out
}

// contents reads the sealed content of a tenant's claimed messages
// (message_contents, written once at acceptance), in read transactions
// that block no writer, outside the claim's.
func (e *Engine) contents(ctx context.Context, tenant string, list []claimed) (map[string][]byte, error) {
	out := make(map[string][]byte, len(list))
	const per = 500
	err := e.db.Tenant(tenant).Snapshot(ctx, func(tx *store.Tx) error {
		if tx.Dialect() == store.Postgres {
			return contentsPG(ctx, tx, list, out)
		}
		for start := 0; start < len(list); start += per {
			chunk := list[start:min(start+per, len(list))]
			m := newMarks(tx.Dialect() == store.SQLite, 1, len(chunk))
			var q strings.Builder
			q.Grow(len(chunk)*6 + 120)
			q.WriteString(`SELECT message_id, content_enc FROM message_contents WHERE tenant_id = $1 AND message_id IN (`)
			for i, c := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString(m.mark(c.id))
			}
			q.WriteString(")")
			rows, err := tx.QueryBulk(ctx, q.String(), m.args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				var sealed []byte
				if err := rows.Scan(&id, &sealed); err != nil {
					_ = rows.Close()
					return err
				}
				out[id] = sealed
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("router: read message contents: %w", err)
	}
	return out, nil
}

// contentsPGSQL reads contents by a join of the ids, as an array, to the
// primary key: one text for any count (prepared once per connection), and
// a plan the planner cannot get wrong. With "message_id IN (...)" on a
// table that grew during the run without statistics (no ANALYZE yet), it
// took the default selectivity of "tenant_id = X" (0.5%), scanned the
// primary key on tenant_id alone and filtered the ids: 10 ms per 500 at
// the start of a 100k campaign, 650 ms at 60k.
const contentsPGSQL = `SELECT k.id, mc.content_enc FROM unnest($2::text[]) AS k(id)
	JOIN message_contents mc ON mc.tenant_id = $1 AND mc.message_id = k.id`

// contentsPG reads the sealed contents of list into out (PostgreSQL).
func contentsPG(ctx context.Context, tx *store.Tx, list []claimed, out map[string][]byte) error {
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.id
	}
	rows, err := tx.Query(ctx, contentsPGSQL, ids)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var id string
		var sealed []byte
		if err := rows.Scan(&id, &sealed); err != nil {
			return err
		}
		out[id] = sealed
	}
	return rows.Err()
}

// backoff is the delay before retry number n (n >= 1).
func (e *Engine) backoff(n int) time.Duration {
	d := float64(e.o.BaseBackoff) * math.Pow(2, float64(n-1))
	if d > float64(e.o.MaxBackoff) {
		d = float64(e.o.MaxBackoff)
	}
	j := 0.8 + 0.4*rand.Float64() // #nosec G404 -- jitter, not security
	return time.Duration(d * j)
}

func errText(err error) string {
	s := err.Error()
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

// record writes the outcomes, each only while this node still holds the
// message's shard with the fence of the claim. The messages sent (the
// bulk of a batch) are settled by one multi-row UPDATE per 500, the
// others one by one; the events of all of them by multi-row INSERTs.
func (e *Engine) record(ctx context.Context, results []outcome) error {
	now := e.o.Now()
	nowUS := store.Micros(now)
	var sent, rest []outcome
	for _, o := range results {
		if o.err == nil && o.suppressed == "" {
			sent = append(sent, o)
		} else {
			rest = append(rest, o)
		}
	}
	return e.db.Platform(ctx, func(p *store.PlatformTx) error {
		evs := make([]messageEvent, 0, len(results))
		settled, err := e.recordSent(ctx, p, sent, nowUS)
		if err != nil {
			return err
		}
		for _, o := range settled {
			b, _ := json.Marshal(map[string]string{"connector": o.connector, "provider_ref": o.providerRef})
			evs = append(evs, messageEvent{tenant: o.tenant, id: o.id, kind: "sent", detail: string(b)})
		}
		p.AfterCommit(func() {
			for _, o := range settled {
				e.m.outcomes.WithLabelValues(StateSent, o.channel).Inc()
				e.m.handoff.Observe(now.Sub(store.FromMicros(o.accepted)).Seconds())
			}
		})
		for _, o := range rest {
			var state, kind, detail string
			var due int64
			useSecondary := o.useSecondary
			switch {
			case o.suppressed != "":
				state, kind = StateSuppressed, "suppressed"
				b, _ := json.Marshal(map[string]string{"reason": o.suppressed})
				detail = string(b)
			case errors.Is(o.err, connectors.ErrInDoubt) && !o.idempotent:
				// The remote end may have taken it (the connection broke
				// after the data left): never risk a second send.
				state, kind = StateUnknown, "in_doubt"
				b, _ := json.Marshal(map[string]any{"connector": o.connector, "error": errText(o.err)})
				detail = string(b)
				e.m.errors.WithLabelValues(o.kind, "in_doubt").Inc()
			case connectors.IsTemporary(o.err) && o.attempts < e.o.MaxAttempts:
				state, kind = StateQueued, "retry"
				delay := e.backoff(o.attempts)
				due = store.Micros(now.Add(delay))
				useSecondary = !o.useSecondary // fail over to the other connector, if any
				b, _ := json.Marshal(map[string]any{"connector": o.connector, "error": errText(o.err), "retry_in_s": int(delay.Seconds())})
				detail = string(b)
				e.m.errors.WithLabelValues(o.kind, "temporary").Inc()
			default:
				state, kind = StateFailed, "failed"
				reason := errText(o.err)
				if connectors.IsTemporary(o.err) {
					reason = fmt.Sprintf("dead-lettered after %d attempts: %s", o.attempts, reason)
				}
				b, _ := json.Marshal(map[string]any{"connector": o.connector, "error": reason})
				detail = string(b)
				if !o.noRoute {
					e.m.errors.WithLabelValues(o.kind, "permanent").Inc()
				}
			}
			lastErr := ""
			if o.err != nil {
				lastErr = errText(o.err)
			} else if o.suppressed != "" {
				lastErr = "suppressed: " + o.suppressed
			}
			if due == 0 {
				due = nowUS
			}
			res, err := p.Exec(ctx, `UPDATE messages SET state = $1, due_at = $2, updated_at = $3, connector_id = $4, last_error = $5, use_secondary = $6
				WHERE tenant_id = $7 AND id = $8 AND state = 'sending' AND fence = $9
				AND EXISTS (SELECT 1 FROM shard_leases l WHERE l.shard = $10 AND l.owner = $11 AND l.fence = $9)`,
				state, due, nowUS, o.connector, lastErr, useSecondary, o.tenant, o.id, o.fence, o.shard, e.o.Node)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				// The lease moved on: the new owner settles this message.
				continue
			}
			evs = append(evs, messageEvent{tenant: o.tenant, id: o.id, kind: kind, detail: detail})
			channel := o.channel
			p.AfterCommit(func() { e.m.outcomes.WithLabelValues(state, channel).Inc() })
		}
		return insertEvents(ctx, p, evs, nowUS)
	})
}

// recordSent marks messages sent, 500 per statement, each only where it is
// still in the claim's hands (state sending, the claim's fence, and this
// node holding the shard with that fence), and returns those it settled.
// On SQLite the values are "?" placeholders (the VALUES columns are
// column1...); on PostgreSQL typed $N. The lease is checked by a scalar
// subquery on the message's shard (the shard is shard_leases' key), not by
// EXISTS: PostgreSQL flattened the EXISTS into a join of the VALUES with
// every lease of the node (500 x 64 rows), each probing the messages being
// sent by a scan: 1.7-8.6 s per 500 messages, growing with the table,
// against 13-24 ms now.
func (e *Engine) recordSent(ctx context.Context, p *store.PlatformTx, list []outcome, nowUS int64) ([]outcome, error) {
	if len(list) == 0 {
		return nil, nil
	}
	sqlite := p.Dialect() == store.SQLite
	byKey := make(map[string]int, len(list))
	for i, o := range list {
		byKey[o.tenant+"\x00"+o.id] = i
	}
	settled := make([]outcome, 0, len(list))
	const per = 500
	for start := 0; start < len(list); start += per {
		chunk := list[start:min(start+per, len(list))]
		m := newMarks(sqlite, 0, len(chunk)*5+3)
		mark := m.cast
		var q strings.Builder
		q.Grow(len(chunk)*60 + 600)
		q.WriteString(`UPDATE messages SET state = 'sent', sent_at = ` + mark(nowUS, "::bigint") + `, updated_at = ` + mark(nowUS, "::bigint") +
			`, connector_id = v.column4, provider_ref = v.column5, last_error = '' FROM (VALUES `)
		for i, o := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + mark(o.tenant, "::text") + ", " + mark(o.id, "::text") + ", " + mark(o.fence, "::bigint") + ", " +
				mark(o.connector, "::text") + ", " + mark(o.providerRef, "::text") + ")")
		}
		q.WriteString(`) AS v WHERE messages.tenant_id = v.column1 AND messages.id = v.column2 AND messages.state = 'sending' AND messages.fence = v.column3
			AND (SELECT l.fence FROM shard_leases l WHERE l.shard = messages.shard AND l.owner = ` + mark(e.o.Node, "::text") + `) = v.column3
			RETURNING tenant_id, id`)
		rows, err := p.QueryBulk(ctx, q.String(), m.args...)
		if err != nil {
			return nil, fmt.Errorf("record sent: %w", err)
		}
		for rows.Next() {
			var tenant, id string
			if err := rows.Scan(&tenant, &id); err != nil {
				_ = rows.Close()
				return nil, err
			}
			if i, ok := byKey[tenant+"\x00"+id]; ok {
				settled = append(settled, list[i])
			}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("record sent: %w", err)
		}
	}
	return settled, nil
}

// MaintainLeases runs one lease cycle at once (heartbeat, renew, take,
// give back, recover in-doubt messages). Run does it on its own; this is
// for tools and tests that drive an engine step by step.
func MaintainLeases(ctx context.Context, e *Engine) error {
	if err := e.ensureShards(ctx); err != nil {
		return err
	}
	return e.maintainLeases(ctx)
}
