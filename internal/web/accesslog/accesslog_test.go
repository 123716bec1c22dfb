package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// viaSlog is the line slog's JSON handler writes for l: the reference the
// encoder must match byte for byte.
func viaSlog(t *testing.T, at time.Time, level slog.Level, l *Line) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, nil)
	actor := ""
	if l.ActorType != "" || l.ActorID != "" {
		actor = l.ActorType + ":" + l.ActorID
	}
	rec := slog.NewRecord(at, level, Message, 0)
	rec.AddAttrs(slog.String("request_id", l.RequestID), slog.String("method", l.Method), slog.String("route", l.Route),
		slog.String("path", l.Path), slog.Int("status", l.Status), slog.Int64("bytes", l.Bytes),
		slog.Int64("duration_us", l.DurationUS), slog.String("remote_ip", l.RemoteIP), slog.String("tenant", l.Tenant),
		slog.String("actor", actor))
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestSameBytesAsSlog: ordinary lines and hostile values (every byte,
// invalid UTF-8, quotes, backslashes, U+2028/2029, HTML characters) encode
// exactly as slog's JSON handler encodes them.
func TestSameBytesAsSlog(t *testing.T) {
	var all strings.Builder
	for b := 0; b < 256; b++ {
		all.WriteByte(byte(b))
	}
	paris := time.FixedZone("CET", 3600)
	cases := []struct {
		at    time.Time
		level slog.Level
		l     Line
	}{
		{time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC), slog.LevelInfo, Line{RequestID: "0123456789abcdef01234567", Method: "GET",
			Route: "GET /api/v1/permissions", Path: "/api/v1/permissions", Status: 200, Bytes: 3166, DurationUS: 41,
			RemoteIP: "127.0.0.1", Tenant: "01a221fa-8bb1-76e1-9099-e82f964ae86a", ActorType: "api", ActorID: "rlc_x.1"}},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, paris), slog.LevelError, Line{Method: "other", Route: "unmatched", Path: "/", Status: 500}},
		{time.Date(2026, 1, 2, 3, 4, 5, 1000, time.UTC).Add(time.Since(time.Now())), slog.LevelInfo, Line{Status: -1, Bytes: -5, DurationUS: 1 << 62}},
		{time.Now(), slog.LevelInfo, Line{RequestID: all.String(), Method: "G\"E\\T", Route: "\u2028\u2029\u00e9\U0001F600",
			Path: "/a\xff\xfe/\xe2\x80/<script>&amp;\x7f", RemoteIP: "::1\n", Tenant: "\t\r", ActorType: "a\"", ActorID: "\x00"}},
		{time.Now(), slog.LevelInfo, Line{ActorID: "only-id"}},
		{time.Now(), slog.LevelInfo, Line{ActorType: "user"}},
	}
	for i, c := range cases {
		want := viaSlog(t, c.at, c.level, &c.l)
		got := string(AppendJSON(nil, c.at, c.level, &c.l))
		if got != want {
			t.Errorf("case %d:\n got %q\nwant %q", i, got, want)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Errorf("case %d: not JSON: %v", i, err)
		}
	}
}

// TestEveryByteEverywhere: the eight-bytes-at-a-time scan of plain ASCII
// hands over to the escaping at the right byte: each of the 256 byte values
// at each place of a 19-byte value (two words and three bytes), and random
// mixes of plain, escaped and multi-byte characters (valid or cut), encode
// as slog's JSON handler encodes them.
func TestEveryByteEverywhere(t *testing.T) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	check := func(v string) {
		t.Helper()
		l := Line{Path: v, RequestID: v}
		if got, want := string(AppendJSON(nil, at, slog.LevelInfo, &l)), viaSlog(t, at, slog.LevelInfo, &l); got != want {
			t.Fatalf("value %q:\n got %q\nwant %q", v, got, want)
		}
	}
	plain := []byte("abcdefghijklmnopqrs")
	for b := 0; b < 256; b++ {
		for p := range plain {
			v := bytes.Clone(plain)
			v[p] = byte(b)
			check(string(v))
		}
	}
	pieces := []string{"a", "Z", "~", "\x7f", " ", "\"", "\\", "\n", "\x00", "\x1f", "é", "\u2028", "\u2029", "😀", "\xff", "\xe2\x80", "<&>"}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var v strings.Builder
		for range rnd.IntN(40) {
			v.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		check(v.String())
	}
}

// TestHandler: lines written by Write and by slog through the same
// handler, from many goroutines, come out whole, one per line; a disabled
// level writes nothing; options the encoder cannot follow give slog's
// plain handler.
func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	ah, ok := h.(*Handler)
	if !ok {
		t.Fatalf("NewHandler returned %T", h)
	}
	log := slog.New(h)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if g%2 == 0 {
					_ = ah.Write(context.Background(), time.Now(), slog.LevelInfo, &Line{RequestID: strings.Repeat("r", 100), Status: i})
				} else {
					log.Info("other", "k", strings.Repeat("v", 100))
				}
			}
		})
	}
	wg.Wait()
	_ = ah.Write(context.Background(), time.Now(), slog.LevelDebug, &Line{RequestID: "debug"})
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if m["request_id"] == "debug" {
			t.Fatal("a debug line was written at level info")
		}
	}
	if _, ok := NewHandler(&buf, &slog.HandlerOptions{AddSource: true}).(*Handler); ok {
		t.Error("AddSource: the direct path would drop the source")
	}
	if _, ok := NewHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}).(*Handler); ok {
		t.Error("ReplaceAttr: the direct path would ignore it")
	}
	if _, ok := log.With("k", "v").Handler().(*Handler); ok {
		t.Error("a derived logger's attributes would be dropped by the direct path")
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	l := Line{RequestID: "0123456789abcdef01234567", Method: "GET", Route: "GET /api/v1/permissions", Path: "/api/v1/permissions",
		Status: 200, Bytes: 3166, DurationUS: 41, RemoteIP: "127.0.0.1", Tenant: "01a221fa-8bb1-76e1-9099-e82f964ae86a",
		ActorType: "api", ActorID: "rlc_01a221fa-8bb1-76e1-9099-e82f964ae86a.1068c8040d5dd580"}
	buf := make([]byte, 0, 512)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], now, slog.LevelInfo, &l)
	}
}
