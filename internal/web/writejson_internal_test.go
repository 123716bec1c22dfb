package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/relais-dev/relais/internal/web/problem"
)

// TestWriteJSON: a JSON answer carries its status, type and no-store, and
// its body decodes to the value; a value that cannot be encoded becomes a 500 problem document,
// never a success status with a truncated body.
func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusCreated, map[string]any{"id": "c-1", "n": 3, "html": "<b>&</b>"})
	res := rec.Result()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", res.StatusCode)
	}
	body := rec.Body.Bytes()
	if res.Header.Get("Content-Type") != "application/json" || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", res.Header)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil || v["id"] != "c-1" || v["html"] != "<b>&</b>" {
		t.Fatalf("body %s: %v", body, err)
	}
	if body[len(body)-1] != '\n' {
		t.Fatal("body does not end with a newline")
	}
	// The values share one array: an Add to one header must not write
	// into its neighbour.
	rec2 := httptest.NewRecorder()
	writeJSON(rec2, http.StatusOK, 1)
	if got := rec2.Header().Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
		t.Fatalf("Cache-Control %v", got)
	}
	rec2.Header().Add("Content-Type", "text/plain")
	if got := rec2.Header().Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
		t.Fatalf("an Add to Content-Type changed Cache-Control: %v", got)
	}

	// Unencodable: a channel, and a float NaN.
	for _, bad := range []any{map[string]any{"c": make(chan int)}, []float64{0, nanValue()}} {
		rec := httptest.NewRecorder()
		writeJSON(rec, http.StatusOK, bad)
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("%T: status %d, body %s", bad, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
			t.Fatalf("content type %q", ct)
		}
		var p problem.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != problem.CodeInternal || p.Status != 500 {
			t.Fatalf("problem %+v: %v", p, err)
		}
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}
