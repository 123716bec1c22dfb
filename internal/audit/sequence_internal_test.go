package audit

import (
	"encoding/json"
	"testing"
)

// TestQueuedEncodingRoundTrips: the hand-written queued form reads back as
// the record's fields, quotes, control characters, HTML and non-ASCII
// included, and the details byte for byte.
func TestQueuedEncodingRoundTrips(t *testing.T) {
	odd := []string{"", "plain", `quo"te`, `back\slash`, "new\nline\t", "<script>&amp;", "é中😀", "\u2028", "\x00\x1f\x7f"}
	for _, v := range odd {
		rec := Record{Category: v, Action: "a" + v, ActorType: v, ActorID: v, ObjectType: v, ObjectID: v, IP: v, UserAgent: v, RequestID: v,
			Details: mustJSON(map[string]any{"k": v, "changes": []Change{{Field: v, Before: v}}})}
		var q queued
		if err := json.Unmarshal(encodeQueued(rec), &q); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if q.Category != v || q.Action != "a"+v || q.ActorType != v || q.ActorID != v || q.ObjectType != v || q.ObjectID != v ||
			q.IP != v || q.UserAgent != v || q.RequestID != v || string(q.Details) != string(rec.Details) {
			t.Fatalf("%q read back as %+v", v, q)
		}
	}
}
