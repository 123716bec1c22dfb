package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/connectors/smshttp"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/web/problem"
)

// messageRoutes are the transactional send API (CORE-5) and the connector
// administration.
func (s *Server) messageRoutes() []Route {
	if s.opts.Router == nil {
		return nil
	}
	return []Route{
		{"POST /api/v1/messages", "messages:send", s.sendMessage},
		{"POST /api/v1/messages/batch", "messages:send", s.sendBatch},
		{"GET /api/v1/messages/{id}", "messages:read", s.getMessage},
		{"GET /api/v1/connectors", "settings:read", s.listConnectors},
		{"POST /api/v1/connectors", "settings:admin", s.addConnector},
		{"PUT /api/v1/routes/{channel}", "settings:admin", s.setRoute},
		// Receipts are authenticated by the connector's own signature.
		{"POST /api/v1/callbacks/{tenant}/{connector}", PermPublic, s.callback},
	}
}

// messageRequest is one message of the API (fixed interface).
type messageRequest struct {
	Channel string            `json:"channel"`
	To      string            `json:"to"`
	From    string            `json:"from"`
	ReplyTo string            `json:"reply_to"`
	Subject string            `json:"subject"`
	Text    string            `json:"text"`
	HTML    string            `json:"html"`
	Headers map[string]string `json:"headers"`
	SendAt  *time.Time        `json:"send_at"`
	// Idempotency key for one message of a batch (the header covers a
	// single message).
	IdempotencyKey string `json:"idempotency_key"`
	// ContactID, TemplateID and Data arrive with contacts and templates.
	ContactID  string          `json:"contact_id"`
	TemplateID string          `json:"template_id"`
	Data       json.RawMessage `json:"data"`
}

func (m messageRequest) toNew() (router.NewMessage, error) {
	if m.TemplateID != "" || m.ContactID != "" {
		return router.NewMessage{}, &router.ValidationError{Field: "template_id", Message: "templates and contact ids are not available yet: send to and the content"}
	}
	nm := router.NewMessage{Channel: m.Channel, To: strings.TrimSpace(m.To), IdempotencyKey: m.IdempotencyKey,
		Content: router.Content{From: m.From, ReplyTo: m.ReplyTo, Subject: m.Subject, Text: m.Text, HTML: m.HTML, Headers: m.Headers}}
	if m.SendAt != nil {
		nm.SendAt = *m.SendAt
	}
	return nm, nil
}

func (s *Server) routerError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *router.ValidationError
	switch {
	case errors.As(err, &ve):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid message",
			Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
	case errors.Is(err, router.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such message or connector in this tenant."})
	default:
		s.serverError(w, r, err)
	}
}

func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req messageRequest
	if pr := problem.DecodeJSON(w, r, &req, s.maxBody); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		req.IdempotencyKey = k
	}
	nm, err := req.toNew()
	if err != nil {
		s.routerError(w, r, err)
		return
	}
	if !s.featureAllows(w, r, p.TenantID, nm.Channel) {
		return
	}
	acc, err := s.opts.Router.Accept(r.Context(), p.TenantID, []router.NewMessage{nm})
	if err != nil {
		s.routerError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/messages/"+acc[0].ID)
	writeJSON(w, http.StatusAccepted, acc[0])
}

func (s *Server) sendBatch(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var reqs []messageRequest
	if pr := problem.DecodeJSON(w, r, &reqs, 16*s.maxBody); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	batch := make([]router.NewMessage, len(reqs))
	for i, m := range reqs {
		nm, err := m.toNew()
		if err != nil {
			s.routerError(w, r, err)
			return
		}
		if !s.featureAllows(w, r, p.TenantID, nm.Channel) {
			return
		}
		batch[i] = nm
	}
	acc, err := s.opts.Router.Accept(r.Context(), p.TenantID, batch)
	if err != nil {
		s.routerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"messages": acc})
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	m, err := s.opts.Router.Get(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		s.routerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) listConnectors(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	list, err := s.opts.Connectors.ListConnectors(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if list == nil {
		list = []router.ConnectorInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"connectors": list})
}

func (s *Server) addConnector(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req struct {
		Name   string          `json:"name"`
		Kind   string          `json:"kind"`
		Config json.RawMessage `json:"config"`
	}
	if pr := problem.DecodeJSON(w, r, &req, 64<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	info, err := s.opts.Connectors.AddConnector(r.Context(), p.TenantID, req.Name, req.Kind, req.Config)
	if err != nil {
		s.routerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) setRoute(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req struct {
		Primary   string `json:"primary"`
		Secondary string `json:"secondary"`
	}
	if pr := problem.DecodeJSON(w, r, &req, 4<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	if err := s.opts.Connectors.SetRoute(r.Context(), p.TenantID, r.PathValue("channel"), req.Primary, req.Secondary); err != nil {
		s.routerError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// callback takes in delivery receipts and bounces posted by an operator
// (MSG-5). The request must carry the connector's signature; a replayed
// request is acknowledged and changes nothing.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	tenantID, connID := r.PathValue("tenant"), r.PathValue("connector")
	notFound := func() {
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such callback."})
	}
	if len(tenantID) > 64 || len(connID) > 64 {
		notFound()
		return
	}
	conn, err := s.opts.Connectors.Opened(r.Context(), tenantID, connID)
	if err != nil {
		notFound()
		return
	}
	parser, ok := conn.(registry.CallbackParser)
	if !ok {
		notFound()
		return
	}
	receipts, err := parser.ParseCallback(r, s.now())
	if errors.Is(err, smshttp.ErrReplay) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "already taken in"})
		return
	}
	if err != nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: "bad_callback", Title: "Callback refused",
			Detail: "The callback's signature, timestamp or body is not acceptable."})
		return
	}
	res, err := s.opts.Router.ApplyReceipts(r.Context(), tenantID, connID, receipts)
	if err != nil {
		parser.ForgetCallback(r) // let the operator's retry through
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
