// Package clock is the clock check of LOG-5: the node measures its offset
// against the configured NTP servers (github.com/beevik/ntp), exposes it as
// the relais_clock_offset_seconds metric, and records each period during
// which the offset exceeded the threshold (an excursion) in the store and in
// the operator's audit trail. Audit events written during an excursion are
// flagged: [Flagged] lists them, and the compliance report counts them.
//
// The offset of one check is the median of the servers that answered a
// valid response; a server that fails is logged and skipped. When none
// answers the check fails, the last good measurement stays, and the
// relais_clock_check_success metric is 0.
package clock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/beevik/ntp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Measurement is the result of one check.
type Measurement struct {
	At       time.Time     `json:"at"`
	Offset   time.Duration `json:"offset_ns"`
	Servers  int           `json:"servers_answered"`
	Exceeded bool          `json:"exceeded"`
	Error    string        `json:"error,omitempty"`
}

// QueryFunc measures the offset against one server ("host" or "host:port").
type QueryFunc func(ctx context.Context, server string) (time.Duration, error)

// NTPQuery queries a server with github.com/beevik/ntp and validates the
// answer (stratum, leap indicator, dispersion, freshness).
func NTPQuery(ctx context.Context, server string) (time.Duration, error) {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: timeout})
	if err != nil {
		return 0, fmt.Errorf("clock: query %s: %w", server, err)
	}
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("clock: %s answered an unusable time: %w", server, err)
	}
	return r.ClockOffset, nil
}

// Checker measures the clock. Set the fields before the first Check.
type Checker struct {
	DB        *store.DB
	Servers   []string
	MaxOffset time.Duration
	// Node names this process in excursions.
	Node   string
	Query  QueryFunc        // NTPQuery when nil
	Now    func() time.Time // time.Now when nil
	Logger *slog.Logger

	mu      sync.Mutex
	last    Measurement
	have    bool
	offset  prometheus.Gauge
	success prometheus.Gauge
}

// Register adds the clock metrics to reg.
func (c *Checker) Register(reg prometheus.Registerer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_clock_offset_seconds",
		Help: "Offset of this node's clock from the NTP servers (positive: the servers are ahead)."})
	c.success = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_clock_check_success",
		Help: "1 when the last clock check got an answer from at least one NTP server."})
	for _, col := range []prometheus.Collector{c.offset, c.success} {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("clock: register metrics: %w", err)
		}
	}
	return nil
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Configured reports whether any server is set.
func (c *Checker) Configured() bool { return c != nil && len(c.Servers) > 0 }

// Last returns the last successful measurement.
func (c *Checker) Last() (Measurement, bool) {
	if c == nil {
		return Measurement{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.have
}

// ErrNoServer is returned by Check when no server answered.
var ErrNoServer = errors.New("clock: no NTP server answered")

// Check measures the offset now, updates the metrics, and opens or closes
// an excursion when the threshold is crossed.
func (c *Checker) Check(ctx context.Context) (Measurement, error) {
	if !c.Configured() {
		return Measurement{}, errors.New("clock: no NTP server configured (monitor.ntp_servers)")
	}
	q := c.Query
	if q == nil {
		q = NTPQuery
	}
	var offsets []time.Duration
	var errs []error
	for _, s := range c.Servers {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		off, err := q(qctx, s)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		offsets = append(offsets, off)
	}
	m := Measurement{At: c.now().UTC()}
	if len(offsets) == 0 {
		c.setSuccess(false)
		m.Error = errors.Join(errs...).Error()
		return m, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
	}
	if len(errs) > 0 && c.Logger != nil {
		c.Logger.Warn("clock check: some NTP servers did not answer", "error", errors.Join(errs...))
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	m.Offset, m.Servers = offsets[len(offsets)/2], len(offsets)
	abs := m.Offset
	if abs < 0 {
		abs = -abs
	}
	m.Exceeded = abs > c.MaxOffset
	if err := c.recordExcursion(ctx, m, abs); err != nil {
		return m, err
	}
	c.mu.Lock()
	c.last, c.have = m, true
	if c.offset != nil {
		c.offset.Set(m.Offset.Seconds())
	}
	c.mu.Unlock()
	c.setSuccess(true)
	return m, nil
}

func (c *Checker) setSuccess(ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.success != nil {
		v := 0.0
		if ok {
			v = 1
		}
		c.success.Set(v)
	}
}

// recordExcursion opens an excursion when the offset exceeds the threshold
// and none is open for this node, extends its maximum while it lasts, and
// closes it when the offset is back within the threshold. Opening and
// closing are recorded in the operator's audit trail.
func (c *Checker) recordExcursion(ctx context.Context, m Measurement, abs time.Duration) error {
	if c.DB == nil {
		return nil
	}
	return c.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var started, maxUS int64
		err := p.QueryRow(ctx, `SELECT started_at, max_offset_us FROM clock_excursions WHERE node = $1 AND ended_at IS NULL`, c.Node).Scan(&started, &maxUS)
		open := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("clock: read excursion: %w", err)
		}
		at := store.Micros(m.At)
		details := map[string]any{"node": c.Node, "offset_ms": m.Offset.Milliseconds(), "threshold_ms": c.MaxOffset.Milliseconds()}
		switch {
		case m.Exceeded && !open:
			if _, err := p.Exec(ctx, `INSERT INTO clock_excursions (node, started_at, max_offset_us) VALUES ($1, $2, $3)`, c.Node, at, abs.Microseconds()); err != nil {
				return fmt.Errorf("clock: open excursion: %w", err)
			}
			_, err = audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "clock.offset_exceeded",
				Actor: audit.Actor{Type: audit.ActorSystem, ID: "clock"}, ObjectType: "node", ObjectID: c.Node, Details: details})
			return err
		case m.Exceeded && open && abs.Microseconds() > maxUS:
			_, err := p.Exec(ctx, `UPDATE clock_excursions SET max_offset_us = $1 WHERE node = $2 AND started_at = $3`, abs.Microseconds(), c.Node, started)
			return err
		case !m.Exceeded && open:
			if _, err := p.Exec(ctx, `UPDATE clock_excursions SET ended_at = $1 WHERE node = $2 AND started_at = $3`, at, c.Node, started); err != nil {
				return fmt.Errorf("clock: close excursion: %w", err)
			}
			_, err = audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "clock.offset_restored",
				Actor: audit.Actor{Type: audit.ActorSystem, ID: "clock"}, ObjectType: "node", ObjectID: c.Node, Details: details})
			return err
		}
		return nil
	})
}

// Run checks every interval until ctx ends (the first check at once).
func (c *Checker) Run(ctx context.Context, interval time.Duration) {
	if !c.Configured() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := c.Check(ctx); err != nil && ctx.Err() == nil && c.Logger != nil {
			c.Logger.Error("clock check failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Excursion is a period when a node's clock was off.
type Excursion struct {
	Node      string        `json:"node"`
	StartedAt time.Time     `json:"started_at"`
	EndedAt   *time.Time    `json:"ended_at,omitempty"`
	MaxOffset time.Duration `json:"max_offset_ns"`
}

// Excursions lists the recorded excursions, newest first (at most limit).
func Excursions(ctx context.Context, db *store.DB, limit int) ([]Excursion, error) {
	var out []Excursion
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT node, started_at, ended_at, max_offset_us FROM clock_excursions ORDER BY started_at DESC LIMIT $1`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e Excursion
			var st, mx int64
			var end *int64
			if err := rows.Scan(&e.Node, &st, &end, &mx); err != nil {
				return err
			}
			e.StartedAt, e.MaxOffset = store.FromMicros(st), time.Duration(mx)*time.Microsecond
			if end != nil {
				t := store.FromMicros(*end)
				e.EndedAt = &t
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("clock: excursions: %w", err)
	}
	return out, nil
}

// Flagged returns the sequence numbers of the tenant's audit events (""
// for the operator's log) written during an excursion of any node: their
// timestamps may be off by more than the threshold. now closes the open
// excursions.
func Flagged(ctx context.Context, db *store.DB, tenantID string, now time.Time) ([]int64, error) {
	ex, err := Excursions(ctx, db, 1000)
	if err != nil {
		return nil, err
	}
	if _, err := audit.Sequence(ctx, db, tenantID); err != nil {
		return nil, err
	}
	var seqs []int64
	read := func(tx *store.Tx) error {
		for _, e := range ex {
			end := now
			if e.EndedAt != nil {
				end = *e.EndedAt
			}
			rows, err := tx.Query(ctx, `SELECT seq FROM audit_events WHERE tenant_id = $1 AND at >= $2 AND at <= $3 ORDER BY seq`,
				store.Micros(e.StartedAt), store.Micros(end))
			if err != nil {
				return err
			}
			for rows.Next() {
				var s int64
				if err := rows.Scan(&s); err != nil {
					_ = rows.Close()
					return err
				}
				seqs = append(seqs, s)
			}
			_ = rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if tenantID == "" {
		err = db.Platform(ctx, func(p *store.PlatformTx) error { return read(p.Tenant("")) })
	} else {
		err = db.Tenant(tenantID).Tx(ctx, read)
	}
	if err != nil {
		return nil, fmt.Errorf("clock: flagged events: %w", err)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// LastOffset is Last in the form the indicators read.
func (c *Checker) LastOffset() (time.Duration, time.Time, bool) {
	m, ok := c.Last()
	return m.Offset, m.At, ok
}
