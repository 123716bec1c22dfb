package web

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
)

// The purge page (REV-1, privacy:admin): a DPO purges a campaign's
// messages, a list, every contact or everything of the organisation,
// sees first what a dry run would remove, and confirms the real purge by
// typing the organisation's identifier. The signed report (the same as
// `relais privacy purge` and POST /api/v1/privacy/purge) is offered for
// download; the purge and its report are in the audit trail.

type purgeData struct {
	flashData
	Slug      string
	Campaigns []campaigns.Campaign
	Lists     []contacts.List
	// Form is what was chosen (scope, campaign, list).
	Form map[string]string
	// Report is the dry run's or the purge's report.
	Report     *privacy.PurgeReport
	Items      []stateCount
	ReportURL  template.URL
	ReportName string
}

func (s *Server) purgePage(w http.ResponseWriter, r *http.Request) {
	s.showPurge(w, r, http.StatusOK, purgeData{})
}

func (s *Server) showPurge(w http.ResponseWriter, r *http.Request, status int, d purgeData) {
	ctx, tid := r.Context(), tenantOf(r)
	if d.Slug == "" {
		t, err := s.opts.Tenants.Get(ctx, tid)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d.Slug = t.Slug
	}
	var err error
	if s.opts.Campaigns != nil {
		if d.Campaigns, err = s.opts.Campaigns.List(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if s.opts.Contacts != nil {
		if d.Lists, err = s.opts.Contacts.Lists(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if d.Form == nil {
		d.Form = map[string]string{"scope": privacy.ScopeCampaign}
	}
	if d.Report != nil {
		for k, n := range d.Report.Items {
			d.Items = append(d.Items, stateCount{k, n})
		}
		sort.Slice(d.Items, func(i, j int) bool { return d.Items[i].State < d.Items[j].State })
	}
	s.page(w, r, status, "purge", "Purge", "purge", d)
}

// purgeRun runs a dry run (the dry-run button) or, with the organisation's
// identifier typed in the confirmation field, the purge itself.
func (s *Server) purgeRun(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	form := map[string]string{"scope": r.PostFormValue("scope"), "campaign": r.PostFormValue("campaign"), "list": r.PostFormValue("list")}
	id := ""
	switch form["scope"] {
	case privacy.ScopeCampaign:
		id = form["campaign"]
	case privacy.ScopeList:
		id = form["list"]
	}
	t, err := s.opts.Tenants.Get(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	dry := r.PostFormValue("action") != "purge"
	if !dry {
		typed := strings.TrimSpace(r.PostFormValue("confirm"))
		if subtle.ConstantTimeCompare([]byte(typed), []byte(t.Slug)) != 1 {
			s.showPurge(w, r, http.StatusUnprocessableEntity, purgeData{Form: form, Slug: t.Slug,
				flashData: flashData{Err: "Nothing was purged: type your organisation's identifier (" + t.Slug + ") to confirm."}})
			return
		}
	}
	rep, err := s.opts.Privacy.Purge(ctx, tid, form["scope"], id, dry)
	if err != nil {
		st, msg, ok := privacyUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showPurge(w, r, st, purgeData{Form: form, Slug: t.Slug, flashData: flashData{Err: msg}})
		return
	}
	d := purgeData{Form: form, Slug: t.Slug, Report: &rep}
	if dry {
		d.Msg = "Dry run: nothing was removed. This is what the purge would remove now."
	} else {
		d.Msg = "Purged. Keep the signed report: it proves what was removed and when."
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d.ReportURL = template.URL("data:application/json;base64," + base64.StdEncoding.EncodeToString(b)) // #nosec G203 -- our own base64 JSON
		d.ReportName = "purge-" + rep.Scope + "-" + rep.FinishedAt.UTC().Format("20060102T150405Z") + ".json"
	}
	s.showPurge(w, r, http.StatusOK, d)
}

// The export page (REV-2, privacy:admin): the organisation's full export
// (the same archive as `relais tenant export` and POST
// /api/v1/privacy/export), encrypted to an OpenPGP public key pasted in
// the form, downloaded by the browser; only the key's holder reads it.

type exportData struct {
	flashData
	Key string
}

func (s *Server) exportPage(w http.ResponseWriter, r *http.Request) {
	s.page(w, r, http.StatusOK, "export", "Export", "export", exportData{})
}

// exportRun streams the export; a key that cannot encrypt is refused on
// the page, before anything is read.
func (s *Server) exportRun(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.PostFormValue("pgp_public_key"))
	to, err := privacy.ParsePGPRecipients([]byte(key))
	if err != nil {
		s.page(w, r, http.StatusUnprocessableEntity, "export", "Export", "export", exportData{Key: key,
			flashData: flashData{Err: "Paste an armored OpenPGP public key that can encrypt (gpg --armor --export YOUR-KEY-ID)."}})
		return
	}
	t, err := s.opts.Tenants.Get(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.streamTenantExport(w, r, s.opts.Privacy, t, to)
}
