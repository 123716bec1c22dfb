package web

import (
	"fmt"
	"reflect"
	"testing"
)

// TestScopeSets: a bearer request's permission set is the token's scopes,
// exactly; sets are shared between requests of the same scope string only,
// and the cache stops growing at its bound while still answering rightly.
func TestScopeSets(t *testing.T) {
	var c scopeSets
	a := c.get("contacts:read  campaigns:send contacts:read")
	want := map[string]bool{"contacts:read": true, "campaigns:send": true}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("set %v, want %v", a, want)
	}
	if b := c.get("contacts:read  campaigns:send contacts:read"); reflect.ValueOf(b).Pointer() != reflect.ValueOf(a).Pointer() {
		t.Fatal("the same scope string built a second set")
	}
	if b := c.get("contacts:read"); b["campaigns:send"] || !b["contacts:read"] || len(b) != 1 {
		t.Fatalf("another scope string got %v", b)
	}
	if e := c.get(""); len(e) != 0 {
		t.Fatalf("empty scope got %v", e)
	}
	for i := range maxScopeSets + 100 {
		s := fmt.Sprintf("p%d q", i)
		if got := c.get(s); len(got) != 2 || !got[fmt.Sprintf("p%d", i)] || !got["q"] {
			t.Fatalf("scope %q got %v", s, got)
		}
	}
	if n := c.n.Load(); n != maxScopeSets {
		t.Fatalf("%d sets kept, want the bound %d", n, maxScopeSets)
	}
	if got := c.get("p999999 q"); len(got) != 2 || !got["p999999"] {
		t.Fatalf("past the bound: %v", got)
	}
}
