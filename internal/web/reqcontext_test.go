package web

import (
	"context"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/web/problem"
)

type otherKey struct{}

// TestRequestContext: the one context node instrument makes answers every
// lookup the four context values answered (request id, audit metadata,
// access log info, principal), passes other keys and cancellation to its
// parent, and a context derived from it still sees its values.
func TestRequestContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "kept"))
	defer cancel()
	rc := &requestContext{Context: parent, info: requestInfo{sourcePort: "4242",
		meta: audit.Meta{IP: "192.0.2.7", UserAgent: "ua", RequestID: "req-1"}}}
	var ctx context.Context = rc
	if got := problem.RequestID(ctx); got != "req-1" {
		t.Fatalf("problem.RequestID = %q", got)
	}
	if m := audit.MetaFrom(ctx); m.IP != "192.0.2.7" || m.RequestID != "req-1" || m.UserAgent != "ua" || m.Actor != (audit.Actor{}) {
		t.Fatalf("audit.MetaFrom = %+v", m)
	}
	if SourcePort(ctx) != "4242" || ctx.Value(otherKey{}) != "kept" {
		t.Fatal("source port or a parent value lost")
	}
	if PrincipalFrom(ctx) != nil {
		t.Fatal("principal before authentication")
	}
	// A principal set in a parent (no node in between) is still found.
	pp := &identity.Principal{ClientID: "outer"}
	inner := &requestContext{Context: context.WithValue(parent, principalKey{}, pp)}
	if PrincipalFrom(inner) != pp {
		t.Fatal("parent principal hidden by an empty node")
	}
	// What require records.
	p := &identity.Principal{TenantID: "t1", ClientID: "c1"}
	SetPrincipal(ctx, p.TenantID, actorOf(p))
	rc.info.principal, rc.info.meta.Actor = p, actorOf(p)
	derived, stop := context.WithTimeout(ctx, 1<<40)
	defer stop()
	if PrincipalFrom(derived) != p || audit.MetaFrom(derived).Actor != (audit.Actor{Type: audit.ActorAPI, ID: "c1"}) ||
		problem.RequestID(derived) != "req-1" || rc.info.tenant != "t1" || rc.info.actor != "api:c1" {
		t.Fatal("values lost through a derived context")
	}
	// Values added below the node shadow it, as with context.WithValue.
	if got := audit.MetaFrom(audit.WithMeta(derived, audit.Meta{RequestID: "x"})); got.RequestID != "x" {
		t.Fatalf("inner metadata not preferred: %+v", got)
	}
	cancel()
	<-derived.Done()
	if rc.Err() == nil {
		t.Fatal("cancellation not passed through")
	}
}
