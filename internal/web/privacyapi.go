package web

import (
	"errors"
	"net/http"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The privacy API (PRIV-3, PRIV-4, REV-1): data-subject requests (access
// and portability as JSON, rectification, erasure, restriction and
// objection), each tracked with its deadline; retention rules and their
// application (with a dry run); purges with their signed report. The
// person is always looked up in the caller's tenant, so another tenant's
// contact is answered 404 like an unknown one. Tenant export, anonymised
// copies and destruction are operator commands (`relais tenant export`,
// `relais anonymize`, `relais tenant destroy`).

func (s *Server) privacyRoutes() []Route {
	if s.opts.Privacy == nil {
		return nil
	}
	req, adm := string(access.PrivacyRequests), string(access.PrivacyAdmin)
	return []Route{
		{"POST /api/v1/privacy/requests", req, s.withPrivacy(s.privacyRequest)},
		{"GET /api/v1/privacy/requests", req, s.withPrivacy(s.privacyRequests)},
		{"GET /api/v1/privacy/retention", adm, s.withPrivacy(s.retentionRules)},
		{"PUT /api/v1/privacy/retention/{kind}", adm, s.withPrivacy(s.setRetentionRule)},
		{"POST /api/v1/privacy/retention/run", adm, s.withPrivacy(s.runRetention)},
		{"POST /api/v1/privacy/purge", adm, s.withPrivacy(s.purge)},
		{"POST /api/v1/privacy/export", adm, s.withPrivacy(s.exportTenant)},
	}
}

type privacyHandler func(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string)

func (s *Server) withPrivacy(h privacyHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		if p == nil || p.TenantID == "" {
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized, Title: "Authentication required",
				Detail: "Sign in (POST /api/v1/auth/login) or send an access token (Authorization: Bearer)."})
			return
		}
		h(w, r, s.opts.Privacy, p.TenantID)
	}
}

// privacyError maps the privacy service's errors to problem documents.
func (s *Server) privacyError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *contacts.ValidationError
	switch {
	case errors.As(err, &ve):
		s.contactsError(w, r, err)
	case errors.Is(err, privacy.ErrNotFound), errors.Is(err, contacts.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
			Detail: "No such person (or list, campaign) in this tenant."})
	case errors.Is(err, privacy.ErrInvalid):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: sentence(err.Error()) + "."})
	case errors.Is(err, privacy.ErrBusy):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "busy", Title: "Jobs running",
			Detail: sentence(err.Error()) + "; try again once they are done."})
	default:
		s.serverError(w, r, err)
	}
}

// privacyRequestBody is POST /api/v1/privacy/requests.
type privacyRequestBody struct {
	Kind      string `json:"kind"`
	ContactID string `json:"contact_id"`
	Email     string `json:"email"`
	Phone     string `json:"phone"`
	// Suppress (erasure): keep the address hashes on the blocklist.
	Suppress bool `json:"suppress"`
	// Patch (rectification): the corrections.
	Patch *contacts.Patch `json:"patch"`
	// Defer records the request without acting (identity check pending).
	Defer bool   `json:"defer"`
	Note  string `json:"note"`
}

func (s *Server) privacyRequest(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	var b privacyRequestBody
	if !s.decode(w, r, &b) {
		return
	}
	sub := privacy.Subject{ContactID: b.ContactID, Email: b.Email, Phone: b.Phone}
	by := ""
	if p := PrincipalFrom(r.Context()); p != nil {
		by = "user:" + p.UserID
		if p.UserID == "" {
			by = "client:" + p.ClientID
		}
	}
	ctx := r.Context()
	if b.Defer {
		req, err := svc.OpenRequest(ctx, tenantID, b.Kind, sub, by, b.Note)
		if err != nil {
			s.privacyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"request": req})
		return
	}
	switch b.Kind {
	case privacy.KindAccess, privacy.KindPortability:
		req, rep, err := svc.Access(ctx, tenantID, sub, b.Kind, by)
		if err != nil {
			s.privacyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"request": req, "report": rep})
	case privacy.KindErasure:
		req, res, err := svc.Erase(ctx, tenantID, sub, privacy.EraseOptions{Suppress: b.Suppress, By: by})
		if err != nil {
			s.privacyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"request": req, "result": res})
	case privacy.KindRectification:
		if b.Patch == nil {
			invalidInput(w, r, "patch", "a rectification needs the corrections in patch")
			return
		}
		req, err := svc.Rectify(ctx, tenantID, sub, *b.Patch, by)
		if err != nil {
			s.privacyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"request": req})
	case privacy.KindRestriction, privacy.KindObjection:
		req, err := svc.Restrict(ctx, tenantID, sub, b.Kind, by)
		if err != nil {
			s.privacyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"request": req})
	default:
		invalidInput(w, r, "kind", "must be access, portability, rectification, erasure, restriction or objection")
	}
}

func (s *Server) privacyRequests(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	q, ok := query(w, r, "open")
	if !ok {
		return
	}
	open, ok := optionalBool(q.Get("open"))
	if !ok {
		invalidInput(w, r, "open", "must be true or false")
		return
	}
	list, err := svc.Requests(r.Context(), tenantID, open)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	if list == nil {
		list = []privacy.Request{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": list})
}

func (s *Server) retentionRules(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	list, err := svc.RetentionRules(r.Context(), tenantID)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	if list == nil {
		list = []privacy.RetentionRule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": list})
}

func (s *Server) setRetentionRule(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	var b struct {
		Months  int   `json:"months"`
		Enabled *bool `json:"enabled"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	enabled := b.Enabled == nil || *b.Enabled
	rule, err := svc.SetRetentionRule(r.Context(), tenantID, r.PathValue("kind"), b.Months, enabled)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rule)
}

func (s *Server) runRetention(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	q, ok := query(w, r, "dry_run")
	if !ok {
		return
	}
	dry, ok := optionalBool(q.Get("dry_run"))
	if !ok {
		invalidInput(w, r, "dry_run", "must be true or false")
		return
	}
	rep, err := svc.ApplyRetention(r.Context(), tenantID, dry)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	var b struct {
		Scope  string `json:"scope"`
		ID     string `json:"id"`
		DryRun bool   `json:"dry_run"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	rep, err := svc.Purge(r.Context(), tenantID, b.Scope, b.ID, b.DryRun)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// exportTenant streams the tenant's full export (privacy.ExportFormat)
// encrypted to the OpenPGP public key in the body: only the holder of the
// private key reads it (gpg --decrypt). A failure after the first byte
// leaves the message without its integrity packet: gpg refuses it.
func (s *Server) exportTenant(w http.ResponseWriter, r *http.Request, svc *privacy.Service, tenantID string) {
	var b struct {
		PGPPublicKey string `json:"pgp_public_key"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	to, err := privacy.ParsePGPRecipients([]byte(b.PGPPublicKey))
	if err != nil {
		invalidInput(w, r, "pgp_public_key", "must be an armored OpenPGP public key that can encrypt")
		return
	}
	t, err := s.opts.Tenants.Get(r.Context(), tenantID)
	if err != nil {
		s.privacyError(w, r, err)
		return
	}
	s.streamTenantExport(w, r, svc, t, to)
}

// streamTenantExport answers the tenant's export encrypted to the
// recipients, as a file to save. A failure after the first byte leaves
// the OpenPGP message without its integrity packet: gpg refuses it.
func (s *Server) streamTenantExport(w http.ResponseWriter, r *http.Request, svc *privacy.Service, t tenants.Tenant, to openpgp.EntityList) {
	tenantID := t.ID
	w.Header().Set("Content-Type", "application/pgp-encrypted")
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.Slug+`-export.tar.gpg"`)
	enc, err := privacy.NewPGPWriter(w, to, t.Slug+"-export.tar")
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if _, err := svc.Export(r.Context(), t, enc, ""); err != nil {
		s.log.Warn("tenant export failed after the response started", "tenant", tenantID, "err", err)
		return
	}
	if err := enc.Close(); err != nil {
		s.log.Warn("tenant export: finish the OpenPGP message", "tenant", tenantID, "err", err)
	}
}
