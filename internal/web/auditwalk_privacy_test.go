package web

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/store"
)

// The coverage walk's examples for the privacy API (issue 9) and the
// supervision API (issue 12); see auditwalk_test.go.

// privacyWalkExamples: subject requests, retention, purge, export.
func privacyWalkExamples() map[string]walkExample {
	return map[string]walkExample{
		"POST /api/v1/privacy/requests": func(w *walkEnv) auditCall {
			email := fmt.Sprintf("erase%d@example.com", w.next())
			w.newID("POST", "/api/v1/contacts", admJSON(map[string]any{"email": email, "first_name": "Philomena"}))
			c := w.asAdmin("POST", "/api/v1/privacy/requests", admJSON(map[string]any{"kind": "erasure", "email": email, "suppress": true}))
			c.personal = []string{email, "Philomena"}
			return c
		},
		"PUT /api/v1/privacy/retention/{kind}": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/privacy/retention/message_content", `{"months":13}`)
		},
		"POST /api/v1/privacy/retention/run": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/privacy/retention/run", "")
		},
		"POST /api/v1/privacy/purge": func(w *walkEnv) auditCall {
			// A draft campaign of its own: a list or contacts purge is
			// refused while other examples' campaigns are scheduled.
			n := w.next()
			tpl := w.newID("POST", "/api/v1/templates", fmt.Sprintf(`{"name":"Purged %d","channel":"email","variants":{"en":{"subject":"Hi","text":"Hello"}}}`, n))
			l := w.newID("POST", "/api/v1/lists", fmt.Sprintf(`{"name":"Purged %d"}`, n))
			camp := w.newID("POST", "/api/v1/campaigns", admJSON(map[string]any{"name": fmt.Sprintf("Purged %d", n), "channel": "email",
				"template_id": tpl, "audience": map[string]any{"list_ids": []string{l}}}))
			return w.asAdmin("POST", "/api/v1/privacy/purge", admJSON(map[string]any{"scope": "campaign", "id": camp}))
		},
		"POST /api/v1/privacy/export": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/privacy/export", admJSON(map[string]string{"pgp_public_key": w.pgpPublicKey()}))
		},
	}
}

// pgpPublicKey is a new armored OpenPGP public key.
func (w *walkEnv) pgpPublicKey() string {
	w.t.Helper()
	_, pub := newPGPKey(w.t)
	return pub
}

// newPGPKey makes an OpenPGP key pair: the entity (to decrypt with) and
// its armored public key (what a DPO pastes or sends).
func newPGPKey(t testing.TB) (*openpgp.Entity, string) {
	t.Helper()
	ent, err := openpgp.NewEntity("Acme DPO", "", "dpo@acme.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	aw, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return ent, pub.String()
}

// monitorWalkExamples: silences, flags, security contacts (tenant), and
// the operator's silences, flags and incident register.
func monitorWalkExamples() map[string]walkExample {
	// incident records an open incident affecting tenant Beta.
	incident := func(w *walkEnv) string {
		res, body := w.send(w.asOperator("POST", "/api/v1/operator/incidents",
			fmt.Sprintf(`{"category":"data_breach","criticality":"high","title":"Walk %d","affected_tenants":["beta"]}`, w.next())))
		if res.StatusCode != 201 {
			w.t.Fatalf("set-up incident: %d %s", res.StatusCode, body)
		}
		out := map[string]any{}
		admDecode(w.t, body, &out)
		ref, _ := out["ref"].(string)
		if ref == "" {
			w.t.Fatalf("set-up incident: no ref in %s", body)
		}
		return ref
	}
	return map[string]walkExample{
		"POST /api/v1/monitor/silences": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/monitor/silences", `{"rule":"latency_threshold","duration":"2d","reason":"load test"}`)
		},
		"PUT /api/v1/flags/{name}": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/flags/"+flags.SMSSending, `{"enabled":false}`)
		},
		"PUT /api/v1/security-contacts": func(w *walkEnv) auditCall {
			c := w.asAdmin("PUT", "/api/v1/security-contacts", `{"emails":["security-officer@acme.example"]}`)
			c.personal = []string{"security-officer@acme.example"}
			return c
		},
		"POST /api/v1/operator/monitor/silences": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/operator/monitor/silences", `{"rule":"latency_threshold","duration":"2h","reason":"maintenance"}`)
		},
		"PUT /api/v1/operator/tenants/{ref}/flags/{name}": func(w *walkEnv) auditCall {
			// Recorded in the tenant's trail (flags.Set), by the token.
			c := w.asOperator("PUT", "/api/v1/operator/tenants/acme/flags/"+flags.SMSSending, `{"enabled":true}`)
			c.platform = false
			return c
		},
		"POST /api/v1/operator/incidents": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/operator/incidents", `{"category":"data_breach","criticality":"high","title":"Leak","affected_tenants":["acme"]}`)
		},
		"POST /api/v1/operator/incidents/{ref}/timeline": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/operator/incidents/"+incident(w)+"/timeline", `{"text":"keys rotated"}`)
		},
		"POST /api/v1/operator/incidents/{ref}/alerts": func(w *walkEnv) auditCall {
			ref := incident(w)
			// A platform alert as the alert engine records it (its rules
			// need hours of traffic to fire).
			id := fmt.Sprintf("walk-alert-%d", w.next())
			w.must(w.db.Platform(w.ctx, func(p *store.PlatformTx) error {
				now := store.Micros(w.db.Now())
				_, err := p.Exec(w.ctx, `INSERT INTO monitor_alerts (tenant_id, id, rule, dedup_key, state, severity, summary, details, fired_at, last_seen_at)
					VALUES ($1, $2, 'latency_threshold', $3, 'firing', 'warning', 'p99 latency above threshold', '{}', $4, $4)`, "", id, id, now)
				return err
			}))
			return w.asOperator("POST", "/api/v1/operator/incidents/"+ref+"/alerts", admJSON(map[string]string{"alert": id}))
		},
		"POST /api/v1/operator/incidents/{ref}/notify": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/operator/incidents/"+incident(w)+"/notify", `{"manual":"called the DPO"}`)
		},
		"POST /api/v1/operator/incidents/{ref}/close": func(w *walkEnv) auditCall {
			ref := incident(w)
			if res, body := w.send(w.asOperator("POST", "/api/v1/operator/incidents/"+ref+"/notify", `{"manual":"called the DPO"}`)); res.StatusCode != 200 {
				w.t.Fatalf("set-up notify: %d %s", res.StatusCode, body)
			}
			return w.asOperator("POST", "/api/v1/operator/incidents/"+ref+"/close", `{"report":"Rotated.","lessons":"Scan for secrets."}`)
		},
	}
}
