// Package accesslog writes the HTTPS access log's lines without going
// through log/slog's record and handler machinery: one append-based
// encoder, no allocation per line, the same bytes as slog's JSON handler
// writes for the same record.
//
// [NewHandler] is slog's JSON handler (use it as the process's logger: all
// other lines go through it unchanged) that remembers its writer, so that
// the web server, finding a *Handler behind its logger, writes its access
// lines with [Handler.Write]. Both paths share one lock on the writer, so
// lines never interleave. A logger derived with With or WithGroup is a
// plain slog handler: the web server then logs through slog as before.
package accesslog

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Line is one access-log record: the fields of the "request" message, in
// the order they are written.
type Line struct {
	RequestID, Method, Route, Path string
	Status                         int
	Bytes                          int64
	// DurationUS is the time to serve the request, in microseconds.
	DurationUS int64
	RemoteIP   string
	Tenant     string
	// ActorType and ActorID are written as "type:id" ("" when both are
	// empty, an unauthenticated request).
	ActorType, ActorID string
}

// Message is the "msg" of every access-log line.
const Message = "request"

// Handler is slog's JSON handler with a direct path for access-log lines.
type Handler struct {
	slog.Handler
	w    *lockedWriter
	pool sync.Pool // *[]byte
}

// lockedWriter serialises the writes of slog's handler and of Handler.Write.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// NewHandler returns a JSON handler writing to w. With options that change
// the output (AddSource, ReplaceAttr) it returns slog's plain JSON handler,
// whose lines Write could not reproduce.
func NewHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	lw := &lockedWriter{w: w}
	jh := slog.NewJSONHandler(lw, opts)
	if opts != nil && (opts.AddSource || opts.ReplaceAttr != nil) {
		return jh
	}
	return &Handler{Handler: jh, w: lw}
}

// Write writes l as a line at level, timestamped t, when the handler is
// enabled for level; it returns the writer's error.
func (h *Handler) Write(ctx context.Context, t time.Time, level slog.Level, l *Line) error {
	if !h.Enabled(ctx, level) {
		return nil
	}
	bp, _ := h.pool.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 512)
		bp = &b
	}
	buf := AppendJSON((*bp)[:0], t, level, l)
	_, err := h.w.Write(buf)
	if cap(buf) <= 4096 { // do not keep the buffer of an unusually long line
		*bp = buf
		h.pool.Put(bp)
	}
	return err
}

// Log hands l to h as a slog record at level, timestamped t, when h is
// enabled for level (the path of a logger that is not a *Handler): the
// record is built here rather than by Logger.LogAttrs, which also walks
// the stack for the caller's PC on every request (no Relais handler
// reports the source). It returns the handler's error.
func Log(ctx context.Context, h slog.Handler, t time.Time, level slog.Level, l *Line) error {
	if !h.Enabled(ctx, level) {
		return nil
	}
	rec := slog.NewRecord(t, level, Message, 0)
	rec.AddAttrs(
		slog.String("request_id", l.RequestID),
		slog.String("method", l.Method),
		slog.String("route", l.Route),
		slog.String("path", l.Path),
		slog.Int("status", l.Status),
		slog.Int64("bytes", l.Bytes),
		// An integer: slog's JSON handler encodes floats through json.Marshal.
		slog.Int64("duration_us", l.DurationUS),
		slog.String("remote_ip", l.RemoteIP),
		slog.String("tenant", l.Tenant),
		slog.String("actor", l.actor()),
	)
	return h.Handle(ctx, rec)
}

// actor is the "actor" field: "type:id", or "" for an unauthenticated
// request.
func (l *Line) actor() string {
	if l.ActorType == "" && l.ActorID == "" {
		return ""
	}
	return l.ActorType + ":" + l.ActorID
}

// AppendJSON appends l as slog's JSON handler would write the record
// (t, level, Message, then l's fields as attributes), newline included.
// t's year must be within [0, 9999] (always so for time.Now), where slog
// would add an error text.
func AppendJSON(buf []byte, t time.Time, level slog.Level, l *Line) []byte {
	buf = append(buf, `{"time":"`...)
	buf = t.Round(0).AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","level":`...)
	buf = appendString(buf, level.String())
	buf = append(buf, `,"msg":"`+Message+`","request_id":`...)
	buf = appendString(buf, l.RequestID)
	buf = append(buf, `,"method":`...)
	buf = appendString(buf, l.Method)
	buf = append(buf, `,"route":`...)
	buf = appendString(buf, l.Route)
	buf = append(buf, `,"path":`...)
	buf = appendString(buf, l.Path)
	buf = append(buf, `,"status":`...)
	buf = strconv.AppendInt(buf, int64(l.Status), 10)
	buf = append(buf, `,"bytes":`...)
	buf = strconv.AppendInt(buf, l.Bytes, 10)
	buf = append(buf, `,"duration_us":`...)
	buf = strconv.AppendInt(buf, l.DurationUS, 10)
	buf = append(buf, `,"remote_ip":`...)
	buf = appendString(buf, l.RemoteIP)
	buf = append(buf, `,"tenant":`...)
	buf = appendString(buf, l.Tenant)
	buf = append(buf, `,"actor":"`...)
	if l.ActorType != "" || l.ActorID != "" {
		buf = appendEscaped(buf, l.ActorType)
		buf = append(buf, ':')
		buf = appendEscaped(buf, l.ActorID)
	}
	return append(buf, "\"}\n"...)
}

func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	buf = appendEscaped(buf, s)
	return append(buf, '"')
}

const hexDigits = "0123456789abcdef"

// Byte masks for plainWord.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainWord reports whether the eight bytes of x are all plainASCII: none
// has its high bit set, none is below 0x20, none is a quote or a
// backslash. (The zero-byte test (v-ones) &^ v & highs has no false
// positive as to whether some byte is zero.)
func plainWord(x uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	return x&highs == 0 && (x-0x20*ones)&^x&highs == 0 && hasZero(x^'"'*ones) == 0 && hasZero(x^'\\'*ones) == 0
}

// plainASCII tells the bytes slog's JSON handler writes as they are:
// printable ASCII other than the quote and the backslash. Read-only.
var plainASCII = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendEscaped escapes s as slog's JSON handler does: quote, backslash
// and control characters (\n, \r, \t or \u00XX), invalid UTF-8 as
// \ufffd, U+2028 and U+2029 as \u2028 and \u2029; everything else as is.
func appendEscaped(buf []byte, s string) []byte {
	// Most values (ids, routes, paths, addresses) are plain ASCII: find the
	// first byte that is not, eight bytes at a time, then one at a time.
	i := 0
	for i+8 <= len(s) && plainWord(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
		uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
		i += 8
	}
	for i < len(s) && plainASCII[s[i]] {
		i++
	}
	if i == len(s) {
		return append(buf, s...)
	}
	start := 0
	for i < len(s) {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\\', '"':
				buf = append(buf, '\\', b)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(buf, s[start:]...)
}
