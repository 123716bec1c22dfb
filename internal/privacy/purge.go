package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Purge scopes (REV-1).
const (
	ScopeCampaign = "campaign" // a campaign's messages and their events (deleted)
	ScopeList     = "list"     // the list's members erased, then the list deleted
	ScopeContacts = "contacts" // every contact erased
	ScopeAll      = "all"      // every business row deleted (users, roles, settings, keys and the audit trail stay)
)

// keptByPurgeAll are the tables a purge of everything keeps: the tenant's
// identity and access, settings, keys, audit trail and privacy records.
var keptByPurgeAll = map[string]bool{
	"tenant_keys": true, "tenant_settings": true, "users": true, "password_history": true, "user_tokens": true,
	"sessions": true, "mfa_challenges": true, "recovery_codes": true, "ip_failures": true, "api_clients": true,
	"roles": true, "groups": true, "group_members": true, "group_roles": true, "user_roles": true, "client_roles": true,
	"audit_heads": true, "audit_events": true, "audit_queue": true, "audit_trees": true, "audit_tree_hashes": true, "audit_signing_keys": true,
	"audit_checkpoints": true, "privacy_requests": true, "retention_rules": true,
}

// PurgeReport says what a purge removed, how, and the result; a real
// purge's report is signed with the tenant's audit key and stored in its
// audit trail.
type PurgeReport struct {
	Format      string           `json:"format"`
	TenantID    string           `json:"tenant_id"`
	Scope       string           `json:"scope"`
	ScopeID     string           `json:"scope_id,omitempty"`
	DryRun      bool             `json:"dry_run"`
	StartedAt   time.Time        `json:"started_at"`
	FinishedAt  time.Time        `json:"finished_at"`
	Items       map[string]int64 `json:"items"`
	Method      string           `json:"method"`
	Result      string           `json:"result"`
	SignedNote  string           `json:"signed_note,omitempty"`
	VerifierKey string           `json:"verifier_key,omitempty"`
}

// PurgeFormat names the purge report format.
const PurgeFormat = "relais-purge-report/1"

// Purge purges a scope of the tenant. With dryRun it only counts. The
// work is one transaction: all or nothing.
func (s *Service) Purge(ctx context.Context, tenantID, scope, scopeID string, dryRun bool) (PurgeReport, error) {
	rep := PurgeReport{Format: PurgeFormat, TenantID: tenantID, Scope: scope, ScopeID: scopeID, DryRun: dryRun, StartedAt: s.now(), Items: map[string]int64{}}
	switch scope {
	case ScopeCampaign, ScopeList:
		if scopeID == "" {
			return rep, fmt.Errorf("%w: a %s purge needs the %s id", ErrInvalid, scope, scope)
		}
	case ScopeContacts, ScopeAll:
	default:
		return rep, fmt.Errorf("%w: scope must be campaign, list, contacts or all", ErrInvalid)
	}
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return rep, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return rep, err
	}
	errDry := fmt.Errorf("dry run")
	err = s.inSecureTx(ctx, tenantID, func(tx *store.Tx) error {
		checkBusy := func() error {
			busy, err := runningJobs(ctx, tx)
			if err == nil && busy != "" {
				err = fmt.Errorf("%w: %s", ErrBusy, busy)
			}
			return err
		}
		switch scope {
		case ScopeCampaign:
			rep.Method = "deletion"
			var state string
			if err := tx.QueryRow(ctx, `SELECT state FROM campaigns WHERE tenant_id = $1 AND id = $2`, scopeID).Scan(&state); err != nil {
				return fmt.Errorf("campaign %w", ErrNotFound)
			}
			if state == "running" || state == "scheduled" {
				return fmt.Errorf("%w: the campaign is %s; cancel it first", ErrBusy, state)
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM message_events WHERE tenant_id = $1 AND message_id IN
				(SELECT id FROM messages WHERE tenant_id = $1 AND campaign_id = $2)`, scopeID).Scan(&n); err != nil {
				return err
			}
			rep.Items["message_events"] = n
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2`, scopeID).Scan(&n); err != nil {
				return err
			}
			rep.Items["messages"] = n
			if dryRun {
				return errDry
			}
			if _, err := tx.Exec(ctx, `DELETE FROM message_events WHERE tenant_id = $1 AND message_id IN
				(SELECT id FROM messages WHERE tenant_id = $1 AND campaign_id = $2)`, scopeID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM message_contents WHERE tenant_id = $1 AND message_id IN
				(SELECT id FROM messages WHERE tenant_id = $1 AND campaign_id = $2)`, scopeID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE tenant_id = $1 AND campaign_id = $2`, scopeID); err != nil {
				return err
			}
		case ScopeList, ScopeContacts:
			rep.Method = "erasure (personal fields deleted, messages' recipient and content overwritten, anonymous statistics kept)"
			q := `SELECT id FROM contacts WHERE tenant_id = $1 AND erased_at IS NULL ORDER BY id`
			args := []any{}
			if scope == ScopeList {
				var name string
				if err := tx.QueryRow(ctx, `SELECT name FROM lists WHERE tenant_id = $1 AND id = $2`, scopeID).Scan(&name); err != nil {
					return fmt.Errorf("list %w", ErrNotFound)
				}
				q = `SELECT c.id FROM contacts c JOIN list_members m ON m.tenant_id = c.tenant_id AND m.contact_id = c.id
					WHERE c.tenant_id = $1 AND m.list_id = $2 AND c.erased_at IS NULL ORDER BY c.id`
				args = append(args, scopeID)
				rep.Items["lists"] = 1
			}
			if err := checkBusy(); err != nil {
				return err
			}
			ids, err := messageIDs(ctx, tx, q, args...)
			if err != nil {
				return err
			}
			rep.Items["contacts"] = int64(len(ids))
			if dryRun {
				return errDry
			}
			for _, id := range ids {
				r, err := s.eraseTx(ctx, tx, cr, id, false, "purge:"+scope)
				if err != nil {
					return err
				}
				rep.Items["messages"] += r.MessagesCleared
				rep.Items["consent_events"] += r.ConsentProofs
			}
			if scope == ScopeList {
				if _, err := tx.Exec(ctx, `DELETE FROM lists WHERE tenant_id = $1 AND id = $2`, scopeID); err != nil {
					return err
				}
			}
		case ScopeAll:
			rep.Method = "deletion"
			if err := checkBusy(); err != nil {
				return err
			}
			for i := len(tabs) - 1; i >= 0; i-- {
				t := tabs[i]
				if keptByPurgeAll[t.Name] {
					continue
				}
				var n int64
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+quoteIdent(t.Name)+` WHERE tenant_id = $1`).Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					rep.Items[t.Name] = n
				}
				if dryRun {
					continue
				}
				if _, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(t.Name)+` WHERE tenant_id = $1`); err != nil {
					return fmt.Errorf("privacy: purge %s: %w", t.Name, err)
				}
			}
			if dryRun {
				return errDry
			}
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.purge", ObjectType: scope, ObjectID: scopeID,
			Details: map[string]any{"items": rep.Items, "method": rep.Method}})
		return err
	})
	rep.FinishedAt = s.now()
	if err == errDry {
		rep.Result = "dry run: nothing purged"
		err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.purge.dry_run", ObjectType: scope, ObjectID: scopeID,
				Details: map[string]any{"items": rep.Items, "method": rep.Method}})
			return err
		})
		return rep, err
	}
	if err != nil {
		return rep, err
	}
	rep.Result = "purged"
	body, err := json.Marshal(rep)
	if err != nil {
		return rep, err
	}
	signed, vkey, err := s.Audit.SignNote(ctx, tenantID, string(body)+"\n")
	if err != nil {
		return rep, fmt.Errorf("privacy: sign the purge report (the purge is done): %w", err)
	}
	rep.SignedNote, rep.VerifierKey = string(signed), vkey
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.purge.report", ObjectType: scope, ObjectID: scopeID,
			Details: map[string]any{"report": json.RawMessage(body), "signed_note": rep.SignedNote, "verifier_key": vkey}})
		return err
	})
	return rep, err
}
