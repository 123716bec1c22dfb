package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/web/accesslog"
	"github.com/relais-dev/relais/internal/web/problem"
)

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it cannot inject into logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// idSource hands out request ids, 96 random bits each in hex, reading
// crypto/rand for 32 ids at a time rather than once per request.
type idSource struct{ pool sync.Pool } // of *idBatch

type idBatch struct {
	buf  [32 * 12]byte
	next int
}

func (s *idSource) newID() string {
	b, _ := s.pool.Get().(*idBatch)
	if b == nil {
		b = &idBatch{next: len(idBatch{}.buf)}
	}
	if b.next == len(b.buf) {
		_, _ = rand.Read(b.buf[:]) // crypto/rand.Read never fails (Go 1.24+)
		b.next = 0
	}
	var out [24]byte
	hex.Encode(out[:], b.buf[b.next:b.next+12])
	b.next += 12 // each batch is used by one goroutine between Get and Put: no id twice
	s.pool.Put(b)
	return string(out[:])
}

// headerValue is h.Get(key) for a key already in canonical form (a
// literal), without Get's canonicalisation of the key on every call.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// clientAddr splits the peer address into IP and port (AUTH-3 records both).
func clientAddr(r *http.Request) (ip, port string) {
	host, p, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr, ""
	}
	return host, p
}

// since returns the time now on the server's clock and how long ago start
// (a reading of that clock) was. On the real clock, the second reading is
// the monotonic clock's alone, a third of time.Now's cost here: the wall
// time is then start's plus the elapsed time, as time.Now would give
// unless the wall clock is stepped while the request runs.
func (s *Server) since(start time.Time) (time.Time, time.Duration) {
	if s.realClock {
		d := time.Since(start)
		return start.Add(d), d
	}
	end := s.now()
	return end, end.Sub(start)
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// inflight is the relais_http_requests_in_flight gauge's value, read
	// at each scrape (an integer add per request, where a prometheus.Gauge
	// is a compare-and-swap loop over a float).
	inflight atomic.Int64
	// series caches the children of the vectors: label hashing costs more
	// than the observation on a small request.
	series sync.Map // seriesKey -> *seriesPair
}

type seriesKey struct {
	route, method string
	code          int
}

type seriesPair struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func (m *metrics) observe(route, method string, code int, seconds float64) {
	k := seriesKey{route, method, code}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &seriesPair{
			count:   m.requests.WithLabelValues(route, method, strconv.Itoa(code)),
			latency: m.duration.WithLabelValues(route, method),
		})
	}
	p := v.(*seriesPair)
	p.count.Inc()
	p.latency.Observe(seconds)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relais_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relais_http_request_duration_seconds",
			Help:    "HTTP request latency, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relais_http_requests_in_flight",
		Help: "HTTP requests being served.",
	}, func() float64 { return float64(m.inflight.Load()) })
	reg.MustRegister(m.requests, m.duration, inflight)
	return m
}

// routeLabel keeps label cardinality bounded: the mux pattern, never the path.
func routeLabel(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// instrument is the outermost middleware: request id, audit metadata,
// panic recovery, body limit, metrics and the access log.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		id := headerValue(r.Header, "X-Request-Id")
		if !validRequestID(id) {
			id = s.ids.newID()
		}
		ip, port := clientAddr(r)
		// One context node carries the request id, the audit metadata and
		// the access log's requestInfo (four context values before).
		rc := &requestContext{Context: r.Context(), start: start, info: requestInfo{sourcePort: port,
			meta: audit.Meta{IP: ip, UserAgent: headerValue(r.Header, "User-Agent"), RequestID: id}}}
		// The name is canonical already (Set would canonicalise it again);
		// the value's slice lives in the node, capacity 1 so that an Add
		// gets a new array.
		rc.reqID[0] = id
		w.Header()["X-Request-Id"] = rc.reqID[:1:1]
		info := &rc.info
		var ctx context.Context = rc
		r = r.WithContext(ctx)
		// A request without a body (every GET) has http.NoBody: nothing to bound.
		if r.Body != nil && r.Body != http.NoBody {
			limit := s.maxBody
			if r.Method == http.MethodPost && (r.URL.Path == "/api/v1/contacts/imports" || r.URL.Path == "/contacts/import") {
				limit = s.opts.MaxImportBytes // contact files are large; the handler streams them to disk
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		sw := &rc.sw // allocated with the context node
		sw.ResponseWriter = w
		s.metrics.inflight.Add(1)
		defer func() {
			s.metrics.inflight.Add(-1)
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				s.log.ErrorContext(ctx, "panic serving request", "request_id", id, "panic", rec, "stack", string(debug.Stack()))
				if sw.status == 0 {
					problem.Write(sw, r, problem.Problem{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
						Title: "Internal error", Detail: "The server hit an unexpected condition; quote the request id to the operator."})
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			end, elapsed := s.since(start) // the line's and the monitor's time too
			route := routeLabel(r)
			s.metrics.observe(route, methodLabel(r.Method), sw.status, elapsed.Seconds())
			if s.opts.Monitor != nil {
				s.opts.Monitor.Requests.ObserveAt(end, info.tenant, route, sw.status, elapsed)
			}
			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelError
			}
			line := accesslog.Line{RequestID: id, Method: r.Method, Route: route, Path: logPath(r.URL.Path), Status: sw.status,
				Bytes: sw.bytes, DurationUS: elapsed.Microseconds(), RemoteIP: ip, Tenant: info.tenant,
				ActorType: info.actor.Type, ActorID: info.actor.ID}
			if s.accessLog != nil {
				// The process logger is accesslog's JSON handler: the line
				// is encoded directly, the same bytes as slog would write.
				_ = s.accessLog.Write(ctx, end, level, &line) // a write error has nowhere to go
				return
			}
			_ = accesslog.Log(ctx, s.log.Handler(), end, level, &line)
		}()
		next.ServeHTTP(sw, r)
	})
}

// requestInfo is filled in as a request passes the middleware (the tenant
// and actor become known only after authentication) and read by the access
// log at the end.
type requestInfo struct {
	sourcePort string
	tenant     string
	actor      audit.Actor
	// meta is the request's audit metadata (audit.MetaFrom); principal the
	// authenticated caller (PrincipalFrom), set by require before the
	// handler runs, on the request's own goroutine.
	meta      audit.Meta
	principal *identity.Principal
}

type requestInfoKey struct{}

// requestContext is the context instrument gives each request: one node,
// one allocation, answering the lookups of problem.RequestID,
// audit.MetaFrom, PrincipalFrom and requestInfo, which four context values
// and a second request copy (in require) answered before. Other keys go to
// the parent.
type requestContext struct {
	context.Context
	// start is the request's arrival, instrument's clock reading.
	start time.Time
	info  requestInfo
	sw    statusWriter // instrument's response writer, in the same allocation
	// reqID backs the X-Request-Id header's value slice.
	reqID [1]string
	// principal holds the bearer principal (principalSlot) in the same
	// allocation; info.principal points to it once authenticated.
	principal identity.Principal
}

// Value implements context.Context.
func (c *requestContext) Value(key any) any {
	switch key {
	case requestInfoKey{}:
		return &c.info
	case principalKey{}:
		if c.info.principal != nil {
			return c.info.principal
		}
	case ctxKeys.requestID:
		return c.info.meta.RequestID
	case ctxKeys.auditMeta:
		return c.info.meta
	}
	return c.Context.Value(key)
}

// ctxKeys are the (unexported) context keys of problem.RequestID and
// audit.MetaFrom, learnt once by asking each function to read a probe
// context; TestRequestContext checks that the node answers both.
var ctxKeys = struct{ requestID, auditMeta any }{
	requestID: probeKey(func(c context.Context) { problem.RequestID(c) }),
	auditMeta: probeKey(func(c context.Context) { audit.MetaFrom(c) }),
}

// keyProbe records the key its Value is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}

func probeKey(read func(context.Context)) any {
	p := &keyProbe{Context: context.Background()}
	read(p)
	if p.key == nil {
		panic("web: context key probe: the reader asked for no key")
	}
	return p.key
}

// SetPrincipal records, for the access log, which tenant and actor a request
// was authenticated as. Authentication middleware calls it.
func SetPrincipal(ctx context.Context, tenant string, actor audit.Actor) {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		info.tenant, info.actor = tenant, actor
	}
}

// SourcePort returns the client's TCP source port (AUTH-3), if known.
func SourcePort(ctx context.Context) string {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info.sourcePort
	}
	return ""
}

// logPath keeps secrets out of the access log: the tokens of unsubscribe
// and confirmation links are capabilities.
func logPath(p string) string {
	for _, prefix := range []string{"/u/", "/confirm/"} {
		if strings.HasPrefix(p, prefix) && len(p) > len(prefix) {
			return prefix + "<token>"
		}
	}
	return p
}
