package audit

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestDetailsEncoding: the hand-written details encoding is byte for byte
// json.Marshal's of the map it replaces (sorted keys, HTML escaping,
// omitted empty fields), for the common values and the ones it hands to
// encoding/json.
func TestDetailsEncoding(t *testing.T) {
	type obj struct {
		A int    `json:"a"`
		B string `json:"b,omitempty"`
	}
	events := []Event{
		{},
		{Details: map[string]any{}},
		{Changes: []Change{{Field: "status", Before: "active", After: "blocked"}, {Field: "email", Personal: true}}},
		{Changes: []Change{{Field: "n", Before: 1, After: int64(-2)}, {Field: "ok", Before: false, After: true}, {Field: "z"}}},
		{Details: map[string]any{"zeta": "z", "alpha": 1, "mid": true, "nil": nil, "f": 1.5, "big": uint64(math.MaxUint64), "i32": int32(-7), "u32": uint32(7)},
			Changes: []Change{{Field: "a<b>&c", Before: "\"quoted\" \\ back", After: "é\u2028\x01"}}},
		{Details: map[string]any{"changes": "overwritten", "b": []string{"x", "<y>"}, "m": map[string]int{"k": 1}, "o": obj{A: 3}, "t": time.Unix(0, 0).UTC()},
			Changes: []Change{{Field: "x", After: map[string]any{"q": "r"}}}},
		{Details: map[string]any{"changes": "kept when there are no changes", "<": ">", "bad": "\xff\xfe"}},
	}
	for i, ev := range events {
		got, err := encodeDetails(ev)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		body := map[string]any{}
		for k, v := range ev.Details {
			body[k] = v
		}
		if len(ev.Changes) > 0 {
			body["changes"] = ev.Changes
		}
		want, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// Bad input is refused as before.
	if _, err := encodeDetails(Event{Details: map[string]any{"c": make(chan int)}}); err == nil {
		t.Error("a value JSON cannot encode was accepted")
	}
	if _, err := encodeDetails(Event{Changes: []Change{{Field: "email", Personal: true, After: "a@example.com"}}}); err == nil {
		t.Error("a personal value was accepted")
	}
}
