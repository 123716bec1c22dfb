package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/store"
)

// Sink is an external log system that receives a copy of every audit event
// (LOG-6: the seed's central log system): syslog, GELF. Send delivers a batch
// in order and returns nil only when the receiver has all of it; the
// forwarder then moves its cursor past the batch. Delivery is at least once:
// after a failure the batch is sent again, so a receiver may see an event
// twice (tenant and seq identify it) but never misses one.
type Sink interface {
	// Name identifies the sink's cursor; keep it stable across restarts.
	Name() string
	Send(ctx context.Context, recs []Record) error
}

// ForwardOptions configure [Service.Forward].
type ForwardOptions struct {
	Sinks []Sink
	// Every is how often the logs are polled for new events (1s when zero).
	Every time.Duration
	// Batch is the most events sent in one Send (500 when zero).
	Batch int
	// MaxBackoff bounds the wait before a failed sink is tried again
	// (1 minute when zero).
	MaxBackoff time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Observe, when set, receives each sink's state after each round:
	// the age of its oldest undelivered event (0 when caught up), the events
	// delivered in the round, and the round's error.
	Observe func(sink string, lag time.Duration, sent int, err error)
}

func (o *ForwardOptions) defaults() {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Batch <= 0 || o.Batch > 1000 {
		o.Batch = 500
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ForwardResult is what one round delivered to one sink.
type ForwardResult struct {
	Sink string
	Sent int
	// Lag is the age of the oldest event still to deliver (0: caught up).
	Lag time.Duration
	Err error
}

// Forward copies every audit event of every log to the sinks, until ctx
// ends. It tails the store, not the requests: a request only appends to
// its log, so a slow or unreachable sink never delays it, and nothing is
// lost while a sink is down (the store is the buffer; each round sends at
// most Batch events per log). A failing sink is retried with exponential
// backoff up to MaxBackoff; the others go on. Several nodes may run it on
// one store: cursors move only forward (compare and set), so at worst an
// event is delivered twice.
func (s *Service) Forward(ctx context.Context, o ForwardOptions) error {
	o.defaults()
	if len(o.Sinks) == 0 {
		return nil
	}
	type backoff struct {
		wait  time.Duration
		until time.Time
	}
	boff := make(map[string]*backoff, len(o.Sinks))
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		now := o.Now()
		var ready []Sink
		for _, sk := range o.Sinks {
			if b := boff[sk.Name()]; b != nil && now.Before(b.until) {
				continue
			}
			ready = append(ready, sk)
		}
		for _, r := range s.forwardRound(ctx, o, ready) {
			if o.Observe != nil {
				o.Observe(r.Sink, r.Lag, r.Sent, r.Err)
			}
			if r.Err == nil {
				delete(boff, r.Sink)
				continue
			}
			s.logger().WarnContext(ctx, "audit forwarding failed; will retry", "sink", r.Sink, "error", r.Err)
			b := boff[r.Sink]
			if b == nil {
				b = &backoff{wait: o.Every}
				boff[r.Sink] = b
			} else {
				b.wait = min(2*b.wait, o.MaxBackoff)
			}
			b.until = o.Now().Add(b.wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ForwardOnce runs one forwarding round over every sink and returns what
// each delivered. It is Forward's step, for tests and for a CLI flush.
func (s *Service) ForwardOnce(ctx context.Context, o ForwardOptions) []ForwardResult {
	o.defaults()
	return s.forwardRound(ctx, o, o.Sinks)
}

func (s *Service) forwardRound(ctx context.Context, o ForwardOptions, sinks []Sink) []ForwardResult {
	out := make([]ForwardResult, 0, len(sinks))
	if len(sinks) == 0 {
		return out
	}
	logs, cursors, err := s.forwardState(ctx)
	if err != nil {
		for _, sk := range sinks {
			out = append(out, ForwardResult{Sink: sk.Name(), Err: err})
		}
		return out
	}
	for _, sk := range sinks {
		r := ForwardResult{Sink: sk.Name()}
		for _, l := range logs {
			from := cursors[cursorKey{l.TenantID, sk.Name()}]
			if from >= l.Events {
				continue
			}
			sent, lag, err := s.forwardLog(ctx, o, sk, l.TenantID, from)
			r.Sent += sent
			r.Lag = max(r.Lag, lag)
			if err != nil {
				r.Err = fmt.Errorf("log %q: %w", l.TenantID, err)
				break
			}
		}
		out = append(out, r)
	}
	return out
}

type cursorKey struct{ tenant, sink string }

// forwardState reads every log's head and every cursor, in platform scope.
func (s *Service) forwardState(ctx context.Context) ([]LogState, map[cursorKey]int64, error) {
	logs, err := s.Logs(ctx)
	if err != nil {
		return nil, nil, err
	}
	cursors := map[cursorKey]int64{}
	err = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, sink, seq FROM audit_forward_cursors`)
		if err != nil {
			return fmt.Errorf("audit: read forwarding cursors: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var k cursorKey
			var seq int64
			if err := rows.Scan(&k.tenant, &k.sink, &seq); err != nil {
				return fmt.Errorf("audit: read forwarding cursors: %w", err)
			}
			cursors[k] = seq
		}
		return rows.Err()
	})
	return logs, cursors, err
}

// forwardLog sends one log's events after seq from to one sink, a batch at
// a time, until the log is drained or the round's batch budget (one batch
// per log and round) is spent. It returns the events sent and the age of
// the oldest event left undelivered.
func (s *Service) forwardLog(ctx context.Context, o ForwardOptions, sk Sink, tenantID string, from int64) (int, time.Duration, error) {
	var recs []Record
	if err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		// The round sequenced every log first (Logs): what this one adds
		// meanwhile goes next round, without a second sequencing here.
		recs, err = listSequenced(ctx, tx, from, o.Batch)
		return err
	}); err != nil {
		return 0, 0, err
	}
	if len(recs) == 0 {
		return 0, 0, nil
	}
	if err := sk.Send(ctx, recs); err != nil {
		return 0, o.Now().Sub(recs[0].At), fmt.Errorf("send to %s: %w", sk.Name(), err)
	}
	last := recs[len(recs)-1].Seq
	if err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		return moveCursor(ctx, tx, sk.Name(), from, last, o.Now())
	}); err != nil {
		return len(recs), 0, err
	}
	// What is left is at most one poll old if the log grew meanwhile; the
	// next round measures it.
	var lag time.Duration
	if len(recs) == o.Batch {
		lag = o.Now().Sub(recs[len(recs)-1].At)
	}
	return len(recs), lag, nil
}

// moveCursor advances a cursor to seq to, only forward: if another node
// moved it further meanwhile, the further of the two stays.
func moveCursor(ctx context.Context, tx *store.Tx, sink string, from, to int64, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO audit_forward_cursors (tenant_id, sink, seq, updated_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, sink) DO UPDATE
		SET seq = excluded.seq, updated_at = excluded.updated_at
		WHERE audit_forward_cursors.seq < excluded.seq`, sink, to, store.Micros(now))
	if err != nil {
		return fmt.Errorf("audit: move forwarding cursor of %s from %d to %d: %w", sink, from, to, err)
	}
	return nil
}
