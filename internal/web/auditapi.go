package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The audit trail API (LOG-2, LOG-4, LOG-6, LOG-7): search, export with
// proofs, the log's public key, its latest checkpoint, and verification.
// The log is always the caller's tenant's. Every read of the trail is
// itself recorded in the trail (category access), every export as an
// export event.

// auditRoutes are the audit trail endpoints (search, export, verification).
func (s *Server) auditRoutes() []Route {
	if s.opts.DB == nil || s.opts.Tenants == nil {
		return nil
	}
	read, export := string(access.AuditRead), string(access.AuditExport)
	return []Route{
		{"GET /api/v1/audit/events", read, s.auditEvents},
		{"GET /api/v1/audit/export", export, s.auditExport},
		{"GET /api/v1/audit/pubkey", read, s.auditPublicKey},
		{"GET /api/v1/audit/checkpoint", read, s.auditCheckpoint},
		{"GET /api/v1/audit/verify", read, s.auditVerify},
	}
}

func (s *Server) auditService() *audit.Service {
	return &audit.Service{DB: s.opts.DB, Master: s.opts.Tenants.Master, Logger: s.log}
}

// auditQueryParams are the parameters GET /api/v1/audit/events accepts.
var auditQueryParams = map[string]bool{
	"from": true, "to": true, "actor_type": true, "actor_id": true, "action": true, "object_type": true, "object_id": true,
	"category": true, "outcome": true, "ip": true, "cursor": true, "limit": true,
}

// auditBadQuery answers a 400 validation problem for one parameter.
func auditBadQuery(w http.ResponseWriter, r *http.Request, field, msg string) {
	problem.Write(w, r, problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Invalid query",
		Detail: field + ": " + msg, Errors: []problem.FieldError{{Field: field, Message: msg}}})
}

// auditPeriod reads from and to (RFC 3339 times or dates YYYY-MM-DD).
func auditPeriod(q url.Values) (from, to time.Time, field string, err error) {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, perr := time.Parse(time.RFC3339Nano, v)
		if perr != nil {
			t, perr = time.Parse(time.DateOnly, v)
		}
		if perr != nil {
			return from, to, p.name, errors.New("use an RFC 3339 time (2025-01-31T00:00:00Z) or a date (2025-01-31)")
		}
		*p.dst = t
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return from, to, "to", errors.New("must be after from")
	}
	return from, to, "", nil
}

func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	q := r.URL.Query()
	for k, v := range q {
		if !auditQueryParams[k] {
			auditBadQuery(w, r, k, "unknown parameter")
			return
		}
		if len(v) > 1 {
			auditBadQuery(w, r, k, "given more than once")
			return
		}
	}
	from, to, field, err := auditPeriod(q)
	if err != nil {
		auditBadQuery(w, r, field, err.Error())
		return
	}
	f := audit.Filter{From: from, To: to, ActorType: q.Get("actor_type"), ActorID: q.Get("actor_id"), Action: q.Get("action"),
		ObjectType: q.Get("object_type"), ObjectID: q.Get("object_id"), Category: q.Get("category"), Outcome: q.Get("outcome"),
		IP: q.Get("ip"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > audit.MaxPage {
			auditBadQuery(w, r, "limit", fmt.Sprintf("must be 1 to %d", audit.MaxPage))
			return
		}
	}
	page, err := s.auditService().Search(r.Context(), p.TenantID, f)
	if errors.Is(err, audit.ErrInvalid) {
		problem.Write(w, r, problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Invalid query", Detail: err.Error()})
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// lazyHeaders sets the export's headers on its first byte, so that an
// error before it can still be a problem document.
type lazyHeaders struct {
	w       http.ResponseWriter
	name    string
	started bool
}

// Write sends the headers with the first byte.
func (l *lazyHeaders) Write(b []byte) (int, error) {
	if !l.started {
		l.started = true
		h := l.w.Header()
		h.Set("Content-Type", "application/jsonl; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", `attachment; filename="`+l.name+`"`)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(b)
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	q := r.URL.Query()
	for k := range q {
		if k != "from" && k != "to" {
			auditBadQuery(w, r, k, "unknown parameter (use from and to)")
			return
		}
	}
	from, to, field, err := auditPeriod(q)
	if err != nil {
		auditBadQuery(w, r, field, err.Error())
		return
	}
	out := &lazyHeaders{w: w, name: "audit-" + s.now().UTC().Format("20060102T150405Z") + ".jsonl"}
	sum, err := s.auditService().Export(r.Context(), p.TenantID, audit.ExportRequest{From: from, To: to}, out)
	switch {
	case err == nil:
		s.log.InfoContext(r.Context(), "audit export", "tenant", p.TenantID, "events", sum.Events, "tree_size", sum.TreeSize)
	case out.started:
		// The file lacks its final checkpoint line: it does not verify.
		s.log.ErrorContext(r.Context(), "audit export cut short", "request_id", problem.RequestID(r.Context()), "error", err)
	case errors.Is(err, audit.ErrInvalid):
		auditBadQuery(w, r, "to", err.Error())
	case errors.Is(err, audit.ErrTampered):
		s.log.ErrorContext(r.Context(), "audit export refused: the log does not verify", "tenant", p.TenantID, "error", err)
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "audit_log_altered", Title: "The audit log does not verify",
			Detail: "The log was altered in the store; it cannot be exported with a valid proof. Ask the operator to run `relais audit verify`."})
	default:
		s.serverError(w, r, err)
	}
}

func (s *Server) auditPublicKey(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	vk, err := s.auditService().PublicKey(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	origin, _ := audit.Origin(p.TenantID)
	writeJSON(w, http.StatusOK, map[string]string{"origin": origin, "key": vk, "algorithm": "Ed25519", "format": "golang.org/x/mod/sumdb/note verifier key"})
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	cp, err := s.auditService().Checkpoint(r.Context(), p.TenantID, audit.ReasonManual)
	if errors.Is(err, audit.ErrTampered) {
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "audit_log_altered", Title: "The audit log does not verify",
			Detail: "The log was altered in the store; no checkpoint is signed over it."})
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cp)
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	svc := s.auditService()
	rep, err := svc.Verify(r.Context(), p.TenantID, audit.VerifyOptions{})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	err = s.opts.DB.Tenant(p.TenantID).Tx(r.Context(), func(tx *store.Tx) error {
		_, err := audit.Append(r.Context(), tx, audit.Event{Category: audit.CategoryAccess, Action: "audit.verify", ObjectType: "audit_log",
			ObjectID: p.TenantID, Details: map[string]any{"ok": rep.OK, "events": rep.Events}})
		return err
	})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
