package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/web/problem"
)

// campaignRoutes are the templates and campaigns endpoints (fixed
// interface: POST /api/v1/campaigns, POST /api/v1/campaigns/{id}/schedule,
// GET /api/v1/campaigns/{id}/report).
func (s *Server) campaignRoutes() []Route {
	if s.opts.Campaigns == nil {
		return nil
	}
	routes := []Route{
		{"POST /api/v1/campaigns", "campaigns:write", s.createCampaign},
		{"GET /api/v1/campaigns", "campaigns:read", s.listCampaigns},
		{"GET /api/v1/campaigns/{id}", "campaigns:read", s.getCampaign},
		{"PUT /api/v1/campaigns/{id}", "campaigns:write", s.updateCampaign},
		{"DELETE /api/v1/campaigns/{id}", "campaigns:write", s.deleteCampaign},
		{"POST /api/v1/campaigns/{id}/schedule", "campaigns:send", s.scheduleCampaign},
		{"POST /api/v1/campaigns/{id}/pause", "campaigns:send", s.controlCampaign("held", s.opts.Campaigns.Pause)},
		{"POST /api/v1/campaigns/{id}/resume", "campaigns:send", s.controlCampaign("released", s.opts.Campaigns.Resume)},
		{"POST /api/v1/campaigns/{id}/cancel", "campaigns:send", s.controlCampaign("cancelled", s.opts.Campaigns.Cancel)},
		{"GET /api/v1/campaigns/{id}/report", "campaigns:read", s.campaignReport},
		{"GET /api/v1/campaign-settings", "campaigns:read", s.getCampaignSettings},
		{"PUT /api/v1/campaign-settings", "settings:admin", s.putCampaignSettings},
	}
	if s.opts.Templates != nil {
		routes = append(routes,
			Route{"POST /api/v1/templates", "templates:write", s.createTemplate},
			Route{"GET /api/v1/templates", "templates:read", s.listTemplates},
			Route{"GET /api/v1/templates/{id}", "templates:read", s.getTemplate},
			Route{"PUT /api/v1/templates/{id}", "templates:write", s.updateTemplate},
			Route{"DELETE /api/v1/templates/{id}", "templates:write", s.deleteTemplate},
			Route{"GET /api/v1/templates/{id}/versions", "templates:read", s.templateVersions},
			Route{"POST /api/v1/templates/{id}/preview", "templates:read", s.previewTemplate},
		)
	}
	return routes
}

// campaignError maps the campaigns, templates and contacts errors to
// problem documents; anything else is a 500 without details.
func (s *Server) campaignError(w http.ResponseWriter, r *http.Request, err error) {
	var cve *campaigns.ValidationError
	var tve *templates.ValidationError
	var ove *contacts.ValidationError
	invalid := func(field, msg, detail string) {
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: detail, Errors: []problem.FieldError{{Field: field, Message: msg}}})
	}
	switch {
	case errors.As(err, &cve):
		invalid(cve.Field, cve.Message, cve.Error())
	case errors.As(err, &tve):
		invalid(tve.Field, tve.Message, tve.Error())
	case errors.As(err, &ove):
		invalid(ove.Field, ove.Message, ove.Error())
	case errors.Is(err, campaigns.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such campaign in this tenant."})
	case errors.Is(err, templates.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such template (or version) in this tenant."})
	case errors.Is(err, campaigns.ErrState), errors.Is(err, templates.ErrConflict), errors.Is(err, templates.ErrArchived):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict", Detail: err.Error()})
	case errors.Is(err, templates.ErrRender):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Template does not render", Detail: err.Error()})
	default:
		s.serverError(w, r, err)
	}
}

// hasBody reports whether an optional JSON body was sent.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Header.Get("Content-Type") != "")
}

func (s *Server) createCampaign(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var in campaigns.Input
	if pr := problem.DecodeJSON(w, r, &in, 64<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	c, err := s.opts.Campaigns.Create(r.Context(), p.TenantID, in)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/campaigns/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	list, err := s.opts.Campaigns.List(r.Context(), p.TenantID)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"campaigns": list})
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	c, err := s.opts.Campaigns.Get(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// updateCampaign replaces a draft's fields (the body is a whole campaign,
// as for POST /api/v1/campaigns); 409 once the campaign is scheduled.
func (s *Server) updateCampaign(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var in campaigns.Input
	if pr := problem.DecodeJSON(w, r, &in, 64<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	c, err := s.opts.Campaigns.Update(r.Context(), p.TenantID, r.PathValue("id"), in)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// deleteCampaign removes a draft; 409 once the campaign is scheduled
// (cancel it instead).
func (s *Server) deleteCampaign(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.opts.Campaigns.Delete(r.Context(), p.TenantID, r.PathValue("id")); err != nil {
		s.campaignError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) scheduleCampaign(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var in campaigns.ScheduleInput
	if hasBody(r) {
		if pr := problem.DecodeJSON(w, r, &in, 16<<10); pr != nil {
			problem.Write(w, r, *pr)
			return
		}
	}
	c, err := s.opts.Campaigns.Schedule(r.Context(), p.TenantID, r.PathValue("id"), in)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// controlCampaign serves pause, resume and cancel: the campaign and how
// many of its messages were moved.
func (s *Server) controlCampaign(count string, act func(ctx context.Context, tenantID, id string) (campaigns.Campaign, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		c, n, err := act(r.Context(), p.TenantID, r.PathValue("id"))
		if err != nil {
			s.campaignError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"campaign": c, count: n})
	}
}

func (s *Server) campaignReport(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	rep, err := s.opts.Campaigns.Report(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) getCampaignSettings(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	st, err := s.opts.Campaigns.GetSettings(r.Context(), p.TenantID)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) putCampaignSettings(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var in struct {
		QuietStart string `json:"quiet_start"`
		QuietEnd   string `json:"quiet_end"`
		TimeZone   string `json:"timezone"`
	}
	if pr := problem.DecodeJSON(w, r, &in, 4<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	st, err := s.opts.Campaigns.SetSettings(r.Context(), p.TenantID, campaigns.Settings{QuietStart: in.QuietStart, QuietEnd: in.QuietEnd, TimeZone: in.TimeZone})
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// templateRequest is a template to save: its content, and whether it is
// transactional (data.* allowed; such a template cannot be sent by a
// campaign).
type templateRequest struct {
	templates.Input
	Transactional bool `json:"transactional"`
}

func (s *Server) templateFields(r *http.Request, transactional bool) (templates.FieldSet, error) {
	fs, err := s.opts.Campaigns.FieldSet(r.Context(), PrincipalFrom(r.Context()).TenantID)
	fs.Data = transactional
	return fs, err
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) {
	var in templateRequest
	if pr := problem.DecodeJSON(w, r, &in, 1<<20); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	fs, err := s.templateFields(r, in.Transactional)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	t, err := s.opts.Templates.Create(r.Context(), PrincipalFrom(r.Context()).TenantID, in.Input, fs)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/templates/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	o := templates.ListOptions{Channel: templates.Channel(r.URL.Query().Get("channel")), Archived: r.URL.Query().Get("archived") == "true"}
	list, err := s.opts.Templates.List(r.Context(), PrincipalFrom(r.Context()).TenantID, o)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	if list == nil {
		list = []templates.Summary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"templates": list})
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) {
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			problem.Write(w, r, problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Invalid input",
				Detail: "version must be a positive integer", Errors: []problem.FieldError{{Field: "version", Message: "must be a positive integer"}}})
			return
		}
		version = n
	}
	t, err := s.opts.Templates.Get(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id"), version)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) updateTemplate(w http.ResponseWriter, r *http.Request) {
	var in templateRequest
	if pr := problem.DecodeJSON(w, r, &in, 1<<20); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	fs, err := s.templateFields(r, in.Transactional)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	t, err := s.opts.Templates.Update(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id"), in.Input, fs)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Templates.Delete(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id")); err != nil {
		s.campaignError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) templateVersions(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Templates.Versions(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id"))
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": list})
}

func (s *Server) previewTemplate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Locale string         `json:"locale"`
		Sample map[string]any `json:"sample"`
	}
	if hasBody(r) {
		if pr := problem.DecodeJSON(w, r, &in, 256<<10); pr != nil {
			problem.Write(w, r, *pr)
			return
		}
	}
	pv, err := s.opts.Templates.Preview(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id"), in.Locale, in.Sample)
	if err != nil {
		s.campaignError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pv)
}
