package web

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/monitor/compliance"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/incidents"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/problem"
)

// Supervision API (issue 12): indicators (AVL-1/2/4), built-in alerts and
// silences (AVL-5), feature flags (DEV-1), security contacts and the
// incident register (INC-1/2), the compliance report (AUD-3). A tenant
// sees its own; the operator routes see everything.
func (s *Server) monitorRoutes() []Route {
	if s.opts.Monitor == nil || s.opts.DB == nil {
		return nil
	}
	read, setRead, setAdmin := string(access.ReportsRead), string(access.SettingsRead), string(access.SettingsAdmin)
	return []Route{
		{"GET /api/v1/monitor/indicators", read, s.monIndicators},
		{"GET /api/v1/monitor/alerts", read, s.monAlerts},
		{"GET /api/v1/monitor/alerts/{id}", read, s.monAlert},
		{"GET /api/v1/monitor/silences", read, s.monSilences},
		{"POST /api/v1/monitor/silences", setAdmin, s.monAddSilence},
		{"GET /api/v1/flags", setRead, s.monFlags},
		{"PUT /api/v1/flags/{name}", setAdmin, s.monSetFlag},
		{"GET /api/v1/security-contacts", setRead, s.monContacts},
		{"PUT /api/v1/security-contacts", setAdmin, s.monSetContacts},
		{"GET /api/v1/incidents", read, s.monTenantIncidents},
		{"GET /api/v1/compliance/report", read, s.monCompliance},
		{"GET /api/v1/monitor/clock", string(access.AuditRead), s.monClock},

		{"GET /api/v1/operator/monitor/indicators", PermOperator, s.monIndicators},
		{"GET /api/v1/operator/monitor/alerts", PermOperator, s.monAlerts},
		{"POST /api/v1/operator/monitor/silences", PermOperator, s.monAddSilence},
		{"GET /api/v1/operator/monitor/clock", PermOperator, s.monClock},
		{"GET /api/v1/operator/incidents", PermOperator, s.incList},
		{"POST /api/v1/operator/incidents", PermOperator, s.incCreate},
		{"GET /api/v1/operator/incidents/{ref}", PermOperator, s.incGet},
		{"POST /api/v1/operator/incidents/{ref}/timeline", PermOperator, s.incTimeline},
		{"POST /api/v1/operator/incidents/{ref}/alerts", PermOperator, s.incLinkAlert},
		{"POST /api/v1/operator/incidents/{ref}/notify", PermOperator, s.incNotify},
		{"POST /api/v1/operator/incidents/{ref}/close", PermOperator, s.incClose},
		{"PUT /api/v1/operator/tenants/{ref}/flags/{name}", PermOperator, s.monOperatorSetFlag},
		{"GET /api/v1/operator/tenants/{ref}/compliance", PermOperator, s.monCompliance},
	}
}

// scopeTenant is the caller's tenant, or "" for an operator token.
func scopeTenant(r *http.Request) string {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p.TenantID
	}
	return ""
}

// monitorError maps supervision errors to problems.
func (s *Server) monitorError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, alerts.ErrInvalid), errors.Is(err, incidents.ErrInvalid), errors.Is(err, flags.ErrUnknown):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input", Detail: err.Error()})
	case errors.Is(err, alerts.ErrNotFound), errors.Is(err, incidents.ErrNotFound), errors.Is(err, tenants.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: err.Error()})
	case errors.Is(err, incidents.ErrState):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict", Detail: err.Error()})
	default:
		s.serverError(w, r, err)
	}
}

func (s *Server) monIndicators(w http.ResponseWriter, r *http.Request) {
	rep, err := s.opts.Monitor.IndicatorReport(r.Context(), scopeTenant(r))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// monClock is the clock check (LOG-5): the last measurement, the recorded
// excursions, and the caller's audit events written during one (the
// operator's log for an operator token).
func (s *Server) monClock(w http.ResponseWriter, r *http.Request) {
	sup := s.opts.Monitor
	ex, err := clock.Excursions(r.Context(), s.opts.DB, 100)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	flagged, err := clock.Flagged(r.Context(), s.opts.DB, scopeTenant(r), sup.Now())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	out := map[string]any{"configured": sup.Clock.Configured(), "excursions": orEmptySlice(ex), "flagged_audit_seqs": orEmptySlice(flagged)}
	if m, ok := sup.Clock.Last(); ok {
		out["last"] = m
	}
	writeJSON(w, http.StatusOK, out)
}

func orEmptySlice[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func (s *Server) monAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := alerts.Filter{State: q.Get("state"), Rule: q.Get("rule")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			auditBadQuery(w, r, "limit", "must be 1 to 1000")
			return
		}
		f.Limit = n
	}
	tenant := scopeTenant(r)
	list, err := alerts.List(r.Context(), s.opts.DB, tenant, tenant == "", f)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

func (s *Server) monAlert(w http.ResponseWriter, r *http.Request) {
	a, err := alerts.Get(r.Context(), s.opts.DB, scopeTenant(r), r.PathValue("id"))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) monSilences(w http.ResponseWriter, r *http.Request) {
	list, err := alerts.Silences(r.Context(), s.opts.DB, scopeTenant(r), s.opts.Monitor.Now())
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"silences": list})
}

type silenceRequest struct {
	Rule     string `json:"rule"`
	Key      string `json:"key"`
	Duration string `json:"duration"` // "2h", "3d"
	Reason   string `json:"reason"`
}

func (s *Server) monAddSilence(w http.ResponseWriter, r *http.Request) {
	var req silenceRequest
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	d, err := parseDays(req.Duration)
	if err != nil {
		auditBadQuery(w, r, "duration", "use a duration such as 2h or 3d")
		return
	}
	now := s.opts.Monitor.Now()
	sil, err := alerts.AddSilence(r.Context(), s.opts.DB, alerts.Silence{TenantID: scopeTenant(r), Rule: req.Rule, Key: req.Key,
		EndsAt: now.Add(d), Reason: req.Reason}, s.opts.Monitor.RuleNames(), now)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sil)
}

// parseDays reads Go durations and whole days ("3d").
func parseDays(v string) (time.Duration, error) {
	if n, ok := cutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 365 {
			return 0, errors.New("bad days")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("bad duration")
	}
	return d, nil
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return s, false
}

func (s *Server) monFlags(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Monitor.Flags.List(r.Context(), scopeTenant(r))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"flags": list})
}

type flagRequest struct {
	Enabled *bool `json:"enabled"`
}

func (s *Server) setFlag(w http.ResponseWriter, r *http.Request, tenantID string) {
	var req flagRequest
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	if req.Enabled == nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: "enabled (true or false) is required", Errors: []problem.FieldError{{Field: "enabled", Message: "required"}}})
		return
	}
	st, err := s.opts.Monitor.Flags.Set(r.Context(), tenantID, r.PathValue("name"), *req.Enabled)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) monSetFlag(w http.ResponseWriter, r *http.Request) { s.setFlag(w, r, scopeTenant(r)) }

func (s *Server) monOperatorSetFlag(w http.ResponseWriter, r *http.Request) {
	t, err := s.opts.Tenants.Get(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	s.setFlag(w, r, t.ID)
}

func (s *Server) monContacts(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Monitor.Incidents.GetContacts(r.Context(), scopeTenant(r))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) monSetContacts(w http.ResponseWriter, r *http.Request) {
	var req incidents.Contacts
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	c, err := s.opts.Monitor.Incidents.SetContacts(r.Context(), scopeTenant(r), req.Emails, req.WebhookURL)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) monTenantIncidents(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Monitor.Incidents.ForTenant(r.Context(), scopeTenant(r))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list})
}

func (s *Server) monCompliance(w http.ResponseWriter, r *http.Request) {
	tenant := scopeTenant(r)
	if tenant == "" {
		tenant = r.PathValue("ref")
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = compliance.FormatJSON
	}
	ctype := map[string]string{compliance.FormatJSON: "application/json", compliance.FormatMarkdown: "text/markdown; charset=utf-8",
		compliance.FormatHTML: "text/html; charset=utf-8"}[format]
	if ctype == "" {
		auditBadQuery(w, r, "format", "use json, md or html")
		return
	}
	rep, err := s.opts.Monitor.Compliance(r.Context(), tenant)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	var b bytes.Buffer
	if err := rep.Write(&b, format); err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes()) // the client may be gone
}

func (s *Server) incRef(w http.ResponseWriter, r *http.Request) (int64, bool) {
	n, err := incidents.ParseRef(r.PathValue("ref"))
	if err != nil {
		s.monitorError(w, r, err)
		return 0, false
	}
	return n, true
}

func (s *Server) incList(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Monitor.Incidents.List(r.Context(), r.URL.Query().Get("status"))
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	if list == nil {
		list = []incidents.Incident{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list})
}

func (s *Server) incCreate(w http.ResponseWriter, r *http.Request) {
	var req incidents.New
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	in, err := s.opts.Monitor.Incidents.Create(r.Context(), req)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/operator/incidents/"+in.Ref)
	writeJSON(w, http.StatusCreated, in)
}

func (s *Server) incGet(w http.ResponseWriter, r *http.Request) {
	n, ok := s.incRef(w, r)
	if !ok {
		return
	}
	in, err := s.opts.Monitor.Incidents.Get(r.Context(), n)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *Server) incTimeline(w http.ResponseWriter, r *http.Request) {
	n, ok := s.incRef(w, r)
	if !ok {
		return
	}
	var req struct {
		Kind string `json:"kind"`
		Text string `json:"text"`
	}
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	in, err := s.opts.Monitor.Incidents.AddEntry(r.Context(), n, req.Kind, req.Text)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *Server) incLinkAlert(w http.ResponseWriter, r *http.Request) {
	n, ok := s.incRef(w, r)
	if !ok {
		return
	}
	var req struct {
		Alert string `json:"alert"`
	}
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	in, err := s.opts.Monitor.Incidents.LinkAlert(r.Context(), n, req.Alert)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *Server) incNotify(w http.ResponseWriter, r *http.Request) {
	n, ok := s.incRef(w, r)
	if !ok {
		return
	}
	var req incidents.NotifyOptions
	if r.ContentLength != 0 {
		if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
			problem.Write(w, r, *p)
			return
		}
	}
	in, err := s.opts.Monitor.Incidents.Notify(r.Context(), n, req)
	if err != nil && in.Number == 0 {
		s.monitorError(w, r, err)
		return
	}
	if err != nil { // some tenants notified, others not: say which
		s.log.WarnContext(r.Context(), "incident notification incomplete", "incident", in.Ref, "error", err)
		writeJSON(w, http.StatusBadGateway, map[string]any{"incident": in, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *Server) incClose(w http.ResponseWriter, r *http.Request) {
	n, ok := s.incRef(w, r)
	if !ok {
		return
	}
	var req struct {
		Report  string `json:"report"`
		Lessons string `json:"lessons"`
	}
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	in, err := s.opts.Monitor.Incidents.Close(r.Context(), n, req.Report, req.Lessons)
	if err != nil {
		s.monitorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

// featureAllows refuses an SMS through the transactional API when the
// tenant's sms_sending flag is off (DEV-1); it writes the problem and
// returns false.
func (s *Server) featureAllows(w http.ResponseWriter, r *http.Request, tenantID, channel string) bool {
	if s.opts.Monitor == nil || channel != "sms" {
		return true
	}
	on, err := s.opts.Monitor.FlagReader.Enabled(r.Context(), tenantID, flags.SMSSending)
	if err != nil {
		s.serverError(w, r, err)
		return false
	}
	if !on {
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "feature_disabled", Title: "SMS sending is switched off",
			Detail: "The tenant's sms_sending feature flag is off; nothing was accepted."})
		return false
	}
	return true
}
