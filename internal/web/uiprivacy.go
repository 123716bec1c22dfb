package web

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
)

// The privacy pages (PRIV-3, PRIV-4): data-subject requests with their
// deadlines, answered through the privacy service (which records each
// request and its audit events), and the tenant's retention rules with a
// dry run. The person is looked up in the signed-in user's tenant only.

func (s *Server) uiPrivacyRoutes() []Route {
	if s.opts.Privacy == nil {
		return nil
	}
	req, adm := string(access.PrivacyRequests), string(access.PrivacyAdmin)
	return []Route{
		{"GET /privacy/requests", req, s.privacyRequestsPage},
		{"POST /privacy/requests", req, s.privacyRequestSubmit},
		{"GET /privacy/retention", adm, s.retentionPage},
		{"POST /privacy/retention", adm, s.retentionSave},
		{"POST /privacy/retention/dry-run", adm, s.retentionDryRun},
		{"GET /privacy/purge", adm, s.purgePage},
		{"POST /privacy/purge", adm, s.purgeRun},
		{"GET /privacy/export", adm, s.exportPage},
		{"POST /privacy/export", adm, s.exportRun},
	}
}

// privacyKinds are the request kinds offered by the form.
var privacyKinds = []string{privacy.KindAccess, privacy.KindPortability, privacy.KindRectification, privacy.KindErasure, privacy.KindRestriction, privacy.KindObjection}

type privacyRequestsData struct {
	flashData
	Requests      []privacy.Request
	Open, Overdue int
	Kinds         []string
	Form          map[string]string
	// Report is the access report just produced: its file, as a data:
	// URL (it is not kept on the server), and its counts.
	Report     template.URL
	ReportName string
	ReportSum  map[string]int
}

func privacyUIError(err error) (int, string, bool) {
	switch {
	case errors.Is(err, privacy.ErrNotFound), errors.Is(err, contacts.ErrNotFound):
		return http.StatusNotFound, "No such person in your organisation (check the address or the contact id).", true
	case errors.Is(err, privacy.ErrInvalid):
		return http.StatusUnprocessableEntity, sentence(strings.TrimPrefix(err.Error(), privacy.ErrInvalid.Error()+": ")) + ".", true
	case errors.Is(err, privacy.ErrBusy):
		return http.StatusConflict, sentence(err.Error()) + "; try again once they are done.", true
	}
	return uiErrorMessage(err)
}

func (s *Server) privacyRequestsPage(w http.ResponseWriter, r *http.Request) {
	s.showPrivacyRequests(w, r, http.StatusOK, privacyRequestsData{flashData: flashData{Msg: notice(r, map[string]string{
		"done": "The request is completed.", "recorded": "The request is recorded, open until you handle it."})}})
}

func (s *Server) showPrivacyRequests(w http.ResponseWriter, r *http.Request, status int, d privacyRequestsData) {
	list, err := s.opts.Privacy.Requests(r.Context(), tenantOf(r), false)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d.Requests, d.Kinds = list, privacyKinds
	for _, q := range list {
		if q.Status == privacy.StatusOpen {
			d.Open++
			if q.Overdue {
				d.Overdue++
			}
		}
	}
	if d.Form == nil {
		d.Form = map[string]string{"kind": privacy.KindAccess}
	}
	s.page(w, r, status, "privacy", "Subject requests", "privacy", d)
}

// privacyRequestSubmit records and answers a request. An access or
// portability request answers with its report, offered for download from
// the page (the report holds the person's data: it is not stored).
func (s *Server) privacyRequestSubmit(w http.ResponseWriter, r *http.Request) {
	ctx, tid, svc := r.Context(), tenantOf(r), s.opts.Privacy
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	form := map[string]string{"kind": f("kind"), "email": f("email"), "phone": f("phone"), "contact_id": f("contact_id"), "note": f("note")}
	again := func(st int, msg string) {
		s.showPrivacyRequests(w, r, st, privacyRequestsData{flashData: flashData{Err: msg}, Form: form})
	}
	fail := func(err error) {
		st, msg, ok := privacyUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		again(st, msg)
	}
	sub := privacy.Subject{ContactID: form["contact_id"], Email: form["email"], Phone: form["phone"]}
	by := "user:" + PrincipalFrom(ctx).UserID
	kind := form["kind"]
	if r.PostFormValue("defer") != "" {
		if _, err := svc.OpenRequest(ctx, tid, kind, sub, by, form["note"]); err != nil {
			fail(err)
			return
		}
		http.Redirect(w, r, "/privacy/requests?done=recorded", http.StatusSeeOther)
		return
	}
	var err error
	switch kind {
	case privacy.KindAccess, privacy.KindPortability:
		req, rep, err := svc.Access(ctx, tid, sub, kind, by)
		if err != nil {
			fail(err)
			return
		}
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d := privacyRequestsData{flashData: flashData{Msg: "The " + kind + " request is completed: download the report below and send it to the person."}}
		d.Report = template.URL("data:application/json;base64," + base64.StdEncoding.EncodeToString(b)) // #nosec G203 -- our own base64 JSON
		d.ReportName = "subject-" + kind + "-" + req.ID + ".json"
		d.ReportSum = map[string]int{"messages": len(rep.Messages), "lists": len(rep.Lists), "consents": len(rep.ConsentHistory), "accesses": len(rep.AccessEvents)}
		s.showPrivacyRequests(w, r, http.StatusOK, d)
		return
	case privacy.KindErasure:
		_, _, err = svc.Erase(ctx, tid, sub, privacy.EraseOptions{Suppress: r.PostFormValue("suppress") != "", By: by})
	case privacy.KindRectification:
		var p contacts.Patch
		set := func(k string) *string {
			if v := f("new_" + k); v != "" {
				return &v
			}
			return nil
		}
		p.Email, p.Phone, p.FirstName, p.LastName, p.Locale = set("email"), set("phone"), set("first_name"), set("last_name"), set("locale")
		if p.Email == nil && p.Phone == nil && p.FirstName == nil && p.LastName == nil && p.Locale == nil {
			again(http.StatusUnprocessableEntity, "A rectification needs at least one corrected value.")
			return
		}
		_, err = svc.Rectify(ctx, tid, sub, p, by)
	case privacy.KindRestriction, privacy.KindObjection:
		_, err = svc.Restrict(ctx, tid, sub, kind, by)
	default:
		again(http.StatusUnprocessableEntity, "Choose the kind of request.")
		return
	}
	if err != nil {
		fail(err)
		return
	}
	http.Redirect(w, r, "/privacy/requests?done=done", http.StatusSeeOther)
}

// ---- retention ----

// retentionKinds are the rules a tenant may set, with what they do.
var retentionKinds = []struct{ Kind, Label, Help string }{
	{privacy.RuleInactiveContacts, "Inactive contacts", "Contacts with no granted consent and no activity for the period are erased."},
	{privacy.RuleBouncedContacts, "Bounced contacts", "Contacts bounced for the period are erased."},
	{privacy.RuleMessageContent, "Message content", "The recipient and content of older messages are removed; their states and times are kept as statistics."},
}

type retentionRow struct {
	Kind, Label, Help string
	Rule              *privacy.RetentionRule
}

type retentionData struct {
	flashData
	Rows   []retentionRow
	Report *privacy.RetentionReport
}

func (s *Server) retentionPage(w http.ResponseWriter, r *http.Request) {
	s.showRetention(w, r, http.StatusOK, retentionData{flashData: flashData{Msg: notice(r, map[string]string{"done": "The rule is saved."})}})
}

func (s *Server) showRetention(w http.ResponseWriter, r *http.Request, status int, d retentionData) {
	rules, err := s.opts.Privacy.RetentionRules(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, k := range retentionKinds {
		row := retentionRow{Kind: k.Kind, Label: k.Label, Help: k.Help}
		for i := range rules {
			if rules[i].Kind == k.Kind {
				row.Rule = &rules[i]
			}
		}
		d.Rows = append(d.Rows, row)
	}
	s.page(w, r, status, "retention", "Retention rules", "retention", d)
}

func (s *Server) retentionSave(w http.ResponseWriter, r *http.Request) {
	months, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("months")))
	if err != nil {
		s.showRetention(w, r, http.StatusUnprocessableEntity, retentionData{flashData: flashData{Err: "The period is a whole number of months (1 to 1200)."}})
		return
	}
	if _, err := s.opts.Privacy.SetRetentionRule(r.Context(), tenantOf(r), r.PostFormValue("kind"), months, r.PostFormValue("enabled") != ""); err != nil {
		st, msg, ok := privacyUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showRetention(w, r, st, retentionData{flashData: flashData{Err: msg}})
		return
	}
	http.Redirect(w, r, "/privacy/retention?done=done", http.StatusSeeOther)
}

// retentionDryRun shows what the enabled rules would remove now, without
// removing anything (the run is recorded in the audit trail).
func (s *Server) retentionDryRun(w http.ResponseWriter, r *http.Request) {
	rep, err := s.opts.Privacy.ApplyRetention(r.Context(), tenantOf(r), true)
	if err != nil {
		st, msg, ok := privacyUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showRetention(w, r, st, retentionData{flashData: flashData{Err: msg}})
		return
	}
	s.showRetention(w, r, http.StatusOK, retentionData{Report: &rep})
}
