package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
)

// The templates and campaigns pages: edit a template with its preview
// (email at desktop and phone widths, in sandboxed frames; SMS with its
// segment count), create a campaign, schedule it, pause, resume or cancel
// it, follow it live and read its report with its charts.

func (s *Server) uiCampaignRoutes() []Route {
	tr, tw := string(access.TemplatesRead), string(access.TemplatesWrite)
	cr, cw, cs := string(access.CampaignsRead), string(access.CampaignsWrite), string(access.CampaignsSend)
	return []Route{
		{"GET /templates", tr, s.templatesPage},
		{"GET /templates/new", tw, s.templateNewPage},
		{"POST /templates/new", tw, s.templateCreate},
		{"GET /templates/{id}", tr, s.templatePage},
		{"POST /templates/{id}", tw, s.templateSave},
		{"GET /templates/{id}/preview", tr, s.templatePreviewFrame},
		{"GET /campaigns", cr, s.campaignsPage},
		{"GET /campaigns/new", cw, s.campaignNewPage},
		{"POST /campaigns/settings", string(access.SettingsAdmin), s.campaignSettingsSave},
		{"POST /campaigns/new", cw, s.campaignCreate},
		{"GET /campaigns/{id}", cr, s.campaignPage},
		{"GET /campaigns/{id}/edit", cw, s.campaignEditPage},
		{"POST /campaigns/{id}/edit", cw, s.campaignUpdate},
		{"POST /campaigns/{id}/delete", cw, s.campaignDelete},
		{"POST /campaigns/{id}/schedule", cs, s.campaignSchedule},
		{"POST /campaigns/{id}/{action}", cs, s.campaignControl},
	}
}

// previewSample fills the usual fields of a preview with a made-up person.
var previewSample = map[string]any{"contact": map[string]any{"first_name": "Ana", "last_name": "Martin", "email": "ana.martin@example.com"}}

// ---- templates ----

func (s *Server) templatesPage(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Templates.List(r.Context(), tenantOf(r), templates.ListOptions{})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := struct {
		flashData
		Templates []templates.Summary
	}{Templates: list}
	s.page(w, r, http.StatusOK, "templates", "Templates", "templates", d)
}

type templateData struct {
	flashData
	New           bool
	ID            string
	Name, Channel string
	Locale        string
	Locales       []string
	Variant       templates.Variant
	Transactional bool
	Version       int
	Preview       *templates.Preview
	PreviewErr    string
	Versions      []templates.VersionInfo
}

func (s *Server) templateNewPage(w http.ResponseWriter, r *http.Request) {
	s.page(w, r, http.StatusOK, "template", "New template", "templates", templateData{New: true, Channel: "email", Locale: "en"})
}

func templateForm(r *http.Request) templateData {
	f := func(k string) string { return r.PostFormValue(k) }
	d := templateData{Name: strings.TrimSpace(f("name")), Channel: f("channel"), Locale: strings.TrimSpace(f("locale")), Transactional: f("transactional") == "on",
		Variant: templates.Variant{Subject: f("subject"), HTML: f("html"), Text: f("text"), From: strings.TrimSpace(f("from")), ReplyTo: strings.TrimSpace(f("reply_to"))}}
	d.Version, _ = strconv.Atoi(f("version"))
	if d.Locale == "" {
		d.Locale = "en"
	}
	if d.Channel == "sms" {
		d.Variant.Subject, d.Variant.HTML, d.Variant.From, d.Variant.ReplyTo = "", "", "", ""
	}
	return d
}

func (s *Server) templateCreate(w http.ResponseWriter, r *http.Request) {
	d := templateForm(r)
	d.New = true
	fs, err := s.templateFields(r, d.Transactional)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	in := templates.Input{Name: d.Name, Channel: templates.Channel(d.Channel), DefaultLocale: d.Locale, Variants: map[string]templates.Variant{d.Locale: d.Variant}}
	t, err := s.opts.Templates.Create(r.Context(), tenantOf(r), in, fs)
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) {
			d.Err = msg
			s.page(w, r, st, "template", "New template", "templates", d)
		})
		return
	}
	http.Redirect(w, r, "/templates/"+url.PathEscape(t.ID)+"?done=created", http.StatusSeeOther)
}

func (s *Server) templatePage(w http.ResponseWriter, r *http.Request) {
	fl := flashData{Msg: notice(r, map[string]string{"created": "The template is created.", "saved": "Saved as a new version."})}
	s.showTemplate(w, r, http.StatusOK, fl, nil)
}

func (s *Server) showTemplate(w http.ResponseWriter, r *http.Request, status int, fl flashData, edited *templateData) {
	ctx, tid := r.Context(), tenantOf(r)
	t, err := s.opts.Templates.Get(ctx, tid, r.PathValue("id"), 0)
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	locale := r.URL.Query().Get("locale")
	if _, ok := t.Variants[locale]; !ok {
		locale = t.DefaultLocale
	}
	d := templateData{flashData: fl, ID: t.ID, Name: t.Name, Channel: string(t.Channel), Locale: locale, Variant: t.Variants[locale],
		Transactional: t.Transactional, Version: t.Version}
	for l := range t.Variants {
		d.Locales = append(d.Locales, l)
	}
	sort.Strings(d.Locales)
	if edited != nil {
		edited.flashData, edited.ID, edited.Channel, edited.Locales, edited.Version = fl, t.ID, string(t.Channel), d.Locales, t.Version
		d = *edited
	}
	pv, err := s.opts.Templates.Preview(ctx, tid, t.ID, locale, previewSample)
	if err != nil {
		if _, msg, ok := uiErrorMessage(err); ok {
			d.PreviewErr = msg
		} else {
			s.serverError(w, r, err)
			return
		}
	} else {
		d.Preview = &pv
	}
	if d.Versions, err = s.opts.Templates.Versions(ctx, tid, t.ID); err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(d.Versions) > 10 {
		d.Versions = d.Versions[len(d.Versions)-10:]
	}
	s.page(w, r, status, "template", t.Name, "templates", d)
}

func (s *Server) templateSave(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	d := templateForm(r)
	t, err := s.opts.Templates.Get(ctx, tid, r.PathValue("id"), 0)
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	variants := map[string]templates.Variant{}
	for l, v := range t.Variants {
		variants[l] = v
	}
	variants[d.Locale] = d.Variant
	fs, err := s.templateFields(r, t.Transactional)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	in := templates.Input{Name: d.Name, DefaultLocale: t.DefaultLocale, Variants: variants, BaseVersion: d.Version}
	if _, err := s.opts.Templates.Update(ctx, tid, t.ID, in, fs); err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showTemplate(w, r, st, flashData{Err: msg}, &d) })
		return
	}
	http.Redirect(w, r, "/templates/"+url.PathEscape(t.ID)+"?done=saved&locale="+url.QueryEscape(d.Locale), http.StatusSeeOther)
}

// templatePreviewFrame serves a rendered email body for the preview
// frames. The content is the tenant's own HTML: it gets a CSP of its own
// that runs no script, loads nothing but images and inline styles, and
// sandboxes the document; only this response may be framed, and only by
// this site.
func (s *Server) templatePreviewFrame(w http.ResponseWriter, r *http.Request) {
	pv, err := s.opts.Templates.Preview(r.Context(), tenantOf(r), r.PathValue("id"), r.URL.Query().Get("locale"), previewSample)
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.errorPage(w, r, st, "No preview", msg) })
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Cache-Control", "no-store")
	body := pv.Content.HTML
	if body == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		body = pv.Content.Text
	} else {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	_, _ = w.Write([]byte(body)) // #nosec G705 -- the tenant's own email HTML, served sandboxed with a no-script CSP
}

// ---- campaigns ----

type campaignRow struct {
	campaigns.Campaign
	TemplateName string
}

func (s *Server) campaignsPage(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	list, err := s.opts.Campaigns.List(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	names := s.templateNames(ctx, tid)
	d := struct {
		flashData
		Campaigns []campaignRow
		Settings  campaigns.Settings
	}{}
	d.Msg = notice(r, map[string]string{"settings": "The campaign settings are saved; they apply to campaigns that start from now.",
		"deleted": "The draft is deleted."})
	if d.Settings, err = s.opts.Campaigns.GetSettings(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, c := range list {
		d.Campaigns = append(d.Campaigns, campaignRow{c, names[c.TemplateID]})
	}
	s.page(w, r, http.StatusOK, "campaigns", "Campaigns", "campaigns", d)
}

// campaignSettingsSave sets the tenant's quiet hours and default time
// zone (settings:admin).
func (s *Server) campaignSettingsSave(w http.ResponseWriter, r *http.Request) {
	st := campaigns.Settings{QuietStart: strings.TrimSpace(r.PostFormValue("quiet_start")), QuietEnd: strings.TrimSpace(r.PostFormValue("quiet_end")),
		TimeZone: strings.TrimSpace(r.PostFormValue("timezone"))}
	if _, err := s.opts.Campaigns.SetSettings(r.Context(), tenantOf(r), st); err != nil {
		s.failPage(w, r, err, func(status int, msg string) { s.errorPage(w, r, status, "Settings not saved", msg) })
		return
	}
	http.Redirect(w, r, "/campaigns?done=settings", http.StatusSeeOther)
}

func (s *Server) templateNames(ctx context.Context, tid string) map[string]string {
	out := map[string]string{}
	if list, err := s.opts.Templates.List(ctx, tid, templates.ListOptions{Archived: true}); err == nil {
		for _, t := range list {
			out[t.ID] = t.Name
		}
	}
	return out
}

type campaignFormData struct {
	flashData
	// ID is the draft being edited ("" for a new campaign).
	ID        string
	Templates []templates.Summary
	Lists     []contacts.List
	Segments  []contacts.Segment
	Name      string
	Template  string
	Purpose   string
	Checked   map[string]bool
}

func (s *Server) showCampaignForm(w http.ResponseWriter, r *http.Request, status int, d campaignFormData) {
	ctx, tid := r.Context(), tenantOf(r)
	all, err := s.opts.Templates.List(ctx, tid, templates.ListOptions{})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, t := range all {
		if !t.Transactional {
			d.Templates = append(d.Templates, t)
		}
	}
	if s.opts.Contacts != nil {
		if d.Lists, err = s.opts.Contacts.Lists(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
		if d.Segments, err = s.opts.Contacts.Segments(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if d.Checked == nil {
		d.Checked = map[string]bool{}
	}
	title := "New campaign"
	if d.ID != "" {
		title = "Edit campaign"
	}
	s.page(w, r, status, "campaignnew", title, "campaigns", d)
}

func (s *Server) campaignNewPage(w http.ResponseWriter, r *http.Request) {
	s.showCampaignForm(w, r, http.StatusOK, campaignFormData{})
}

// campaignFromForm reads the campaign form into in (name, template and
// its channel, audience, purpose; the other fields stay as in holds them)
// and the form's data to show again. It answers the page itself and
// returns false when the template cannot be read.
func (s *Server) campaignFromForm(w http.ResponseWriter, r *http.Request, in *campaigns.Input, d *campaignFormData) bool {
	d.Name, d.Template = strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("template")
	d.Purpose, d.Checked = strings.TrimSpace(r.PostFormValue("purpose")), map[string]bool{}
	in.Name, in.TemplateID, in.Purpose = d.Name, d.Template, d.Purpose
	in.Audience = campaigns.Audience{}
	for _, id := range r.PostForm["list"] {
		in.Audience.ListIDs = append(in.Audience.ListIDs, id)
		d.Checked[id] = true
	}
	for _, id := range r.PostForm["segment"] {
		in.Audience.SegmentIDs = append(in.Audience.SegmentIDs, id)
		d.Checked[id] = true
	}
	if d.Template != "" {
		t, err := s.opts.Templates.Get(r.Context(), tenantOf(r), d.Template, 0)
		if err != nil {
			d.Err = "Choose a template."
			s.showCampaignForm(w, r, http.StatusUnprocessableEntity, *d)
			return false
		}
		in.Channel = string(t.Channel)
	}
	return true
}

func (s *Server) campaignCreate(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	var d campaignFormData
	var in campaigns.Input
	if !s.campaignFromForm(w, r, &in, &d) {
		return
	}
	c, err := s.opts.Campaigns.Create(ctx, tid, in)
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) {
			d.Err = msg
			s.showCampaignForm(w, r, st, d)
		})
		return
	}
	http.Redirect(w, r, "/campaigns/"+url.PathEscape(c.ID)+"?done=created", http.StatusSeeOther)
}

// campaignEditPage shows a draft in the campaign form; a campaign that
// has left the draft state is shown with the reason instead.
func (s *Server) campaignEditPage(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Campaigns.Get(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	if c.State != campaigns.StateDraft {
		s.showCampaign(w, r, http.StatusConflict, flashData{Err: "Only a draft can be edited; this campaign is " + c.State + "."})
		return
	}
	d := campaignFormData{ID: c.ID, Name: c.Name, Template: c.TemplateID, Purpose: c.Purpose, Checked: map[string]bool{}}
	for _, id := range c.Audience.ListIDs {
		d.Checked[id] = true
	}
	for _, id := range c.Audience.SegmentIDs {
		d.Checked[id] = true
	}
	s.showCampaignForm(w, r, http.StatusOK, d)
}

// campaignUpdate saves the form over a draft: the fields the form does not
// show (schedule, throttle, template version) stay as they were.
func (s *Server) campaignUpdate(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	c, err := s.opts.Campaigns.Get(ctx, tid, id)
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	d := campaignFormData{ID: c.ID}
	in := campaigns.Input{Channel: c.Channel, TemplateVersion: c.TemplateVersion, Schedule: c.Schedule, ThrottlePerSecond: c.ThrottlePerSecond}
	if !s.campaignFromForm(w, r, &in, &d) {
		return
	}
	if d.Template != c.TemplateID {
		in.TemplateVersion = 0 // another template: its latest version when scheduled
	}
	if _, err := s.opts.Campaigns.Update(ctx, tid, id, in); err != nil {
		s.failPage(w, r, err, func(st int, msg string) {
			d.Err = msg
			s.showCampaignForm(w, r, st, d)
		})
		return
	}
	http.Redirect(w, r, "/campaigns/"+url.PathEscape(id)+"?done=saved", http.StatusSeeOther)
}

// campaignDelete deletes a draft.
func (s *Server) campaignDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Campaigns.Delete(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showCampaign(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/campaigns?done=deleted", http.StatusSeeOther)
}

type campaignData struct {
	flashData
	C            campaigns.Campaign
	TemplateName string
	Report       campaigns.Report
	States       []stateCount
	Excluded     []stateCount
	Chart        *chart
	Audience     []string
	Eligible     *contacts.AudienceStats
	Live         bool
	Done         int64
	Total        int64
	SendAt       string
	Throttle     int
}

type stateCount struct {
	State string
	N     int64
}

func (d campaignData) refresh() int {
	if d.Live {
		return 3
	}
	return 0
}

func (s *Server) campaignPage(w http.ResponseWriter, r *http.Request) {
	fl := flashData{Msg: notice(r, map[string]string{"created": "The campaign is saved as a draft: check its audience and schedule it.",
		"scheduled": "The campaign is scheduled.", "saved": "The draft is saved.", "pause": "The campaign is paused.", "resume": "The campaign is resumed.", "cancel": "The campaign is cancelled."})}
	s.showCampaign(w, r, http.StatusOK, fl)
}

func (s *Server) showCampaign(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	ctx, tid := r.Context(), tenantOf(r)
	rep, err := s.opts.Campaigns.Report(ctx, tid, r.PathValue("id"))
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	c := rep.Campaign
	d := campaignData{flashData: fl, C: c, Report: rep, TemplateName: s.templateNames(ctx, tid)[c.TemplateID], Throttle: c.ThrottlePerSecond}
	d.Live = c.State == campaigns.StateRunning || c.State == campaigns.StateScheduled
	for _, st := range []string{"queued", "held", "sending", "sent", "delivered", "bounced", "failed", "unknown", "suppressed"} {
		always := st == "sent" || st == "delivered" || st == "bounced" || st == "failed"
		if n := rep.Counts[st]; n > 0 || always {
			d.States = append(d.States, stateCount{st, n})
		}
	}
	d.Total = rep.Messages
	d.Done = rep.Messages - rep.Counts["queued"] - rep.Counts["held"] - rep.Counts["sending"]
	for k, n := range c.Progress.Excluded {
		d.Excluded = append(d.Excluded, stateCount{k, n})
	}
	sort.Slice(d.Excluded, func(i, j int) bool { return d.Excluded[i].State < d.Excluded[j].State })
	if s.opts.Contacts != nil {
		lists, _ := s.opts.Contacts.Lists(ctx, tid)
		segs, _ := s.opts.Contacts.Segments(ctx, tid)
		for _, id := range c.Audience.ListIDs {
			d.Audience = append(d.Audience, "list "+nameOf(id, lists, nil))
		}
		for _, id := range c.Audience.SegmentIDs {
			d.Audience = append(d.Audience, "segment "+nameOf(id, nil, segs))
		}
		if c.State == campaigns.StateDraft {
			st, err := s.opts.Contacts.CountAudience(ctx, tid, contacts.AudienceSpec{ListIDs: c.Audience.ListIDs, SegmentIDs: c.Audience.SegmentIDs,
				Channel: contacts.Channel(c.Channel), Purpose: c.Purpose}, 0)
			if err == nil {
				d.Eligible = &st
			}
		}
	}
	if rep.Messages > 0 {
		if d.Chart, err = s.campaignChart(ctx, tid, c); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	d.SendAt = s.now().UTC().Add(time.Hour).Truncate(time.Minute).Format("2006-01-02T15:04")
	s.page(w, r, status, "campaign", c.Name, "campaigns", d)
}

func nameOf(id string, lists []contacts.List, segs []contacts.Segment) string {
	for _, l := range lists {
		if l.ID == id {
			return l.Name
		}
	}
	for _, sg := range segs {
		if sg.ID == id {
			return sg.Name
		}
	}
	return id
}

// campaignChart counts a campaign's messages sent, delivered, bounced and
// failed over time, in up to 48 buckets from its first to its last event.
func (s *Server) campaignChart(ctx context.Context, tid string, c campaigns.Campaign) (*chart, error) {
	type ev struct {
		col, state string
	}
	series := []ev{{"sent_at", ""}, {"delivered_at", ""}, {"updated_at", "bounced"}, {"updated_at", "failed"}}
	var lo, hi int64
	err := s.opts.DB.Tenant(tid).Tx(ctx, func(tx *store.Tx) error {
		var mn, mx *int64
		err := tx.QueryRow(ctx, `SELECT min(sent_at), max(CASE WHEN delivered_at IS NOT NULL AND delivered_at > updated_at THEN delivered_at ELSE updated_at END)
			FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('sent', 'delivered', 'bounced', 'failed')`, c.ID).Scan(&mn, &mx)
		if err != nil || mn == nil || mx == nil {
			return err
		}
		lo, hi = *mn, *mx
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: campaign chart: %w", err)
	}
	if hi <= lo {
		hi = lo + 1
	}
	const buckets = 48
	width := (hi - lo + buckets) / buckets // µs per bucket, at least 1
	if width < 1_000_000 {
		width = 1_000_000 // at least a second a bucket
	}
	// Bucket 0 is the moment before the first hand-off, at zero, so that
	// even a campaign sent within one bucket draws lines.
	n := int((hi-lo)/width) + 2
	lo -= width
	data := make([][]int64, len(series))
	err = s.opts.DB.Tenant(tid).Tx(ctx, func(tx *store.Tx) error {
		for k, sr := range series {
			data[k] = make([]int64, n)
			q := `SELECT (` + sr.col + ` - $3) / $4, count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND ` + sr.col + ` IS NOT NULL`
			args := []any{c.ID, lo, width}
			if sr.state != "" {
				q += ` AND state = $5`
				args = append(args, sr.state)
			}
			rows, err := tx.Query(ctx, q+` GROUP BY 1`, args...) // #nosec G202 -- column names from the fixed list above
			if err != nil {
				return err
			}
			for rows.Next() {
				var b, cnt int64
				if err := rows.Scan(&b, &cnt); err != nil {
					_ = rows.Close() // rows.Err reports what matters
					return err
				}
				if b < 0 {
					b = 0
				}
				if b >= int64(n) {
					b = int64(n) - 1
				}
				data[k][b] += cnt
			}
			_ = rows.Close() // rows.Err reports what matters
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: campaign chart: %w", err)
	}
	labels := make([]string, n)
	start := store.FromMicros(lo).UTC()
	for i := range labels {
		t := start.Add(time.Duration(int64(i)*width) * time.Microsecond)
		switch {
		case width >= 3600*1_000_000:
			labels[i] = t.Format("2 Jan 15:04")
		case width >= 60*1_000_000:
			labels[i] = t.Format("15:04")
		default:
			labels[i] = t.Format("15:04:05")
		}
	}
	return lineChart("Messages over time (cumulative, UTC)", []string{"Sent", "Delivered", "Bounced", "Failed"},
		[]string{"s-sent", "s-delivered", "s-bounced", "s-failed"}, data, labels), nil
}

func (s *Server) campaignSchedule(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	in := campaigns.ScheduleInput{}
	switch r.PostFormValue("when") {
	case "at":
		t, err := time.Parse("2006-01-02T15:04", r.PostFormValue("send_at"))
		if err != nil {
			s.showCampaign(w, r, http.StatusUnprocessableEntity, flashData{Err: "Give the send time as a date and time (UTC)."})
			return
		}
		in.Schedule = &campaigns.Schedule{Kind: campaigns.KindAt, SendAt: &t}
	case "local":
		in.Schedule = &campaigns.Schedule{Kind: campaigns.KindLocal, LocalTime: r.PostFormValue("send_at")}
	default:
		in.Schedule = &campaigns.Schedule{Kind: campaigns.KindNow}
	}
	if v := strings.TrimSpace(r.PostFormValue("throttle")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.showCampaign(w, r, http.StatusUnprocessableEntity, flashData{Err: "The throttle is a number of messages per second (0 for none)."})
			return
		}
		in.ThrottlePerSecond = &n
	}
	if _, err := s.opts.Campaigns.Schedule(ctx, tid, r.PathValue("id"), in); err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showCampaign(w, r, st, flashData{Err: msg}) })
		return
	}
	s.opts.Campaigns.Wake()
	http.Redirect(w, r, "/campaigns/"+url.PathEscape(r.PathValue("id"))+"?done=scheduled", http.StatusSeeOther)
}

func (s *Server) campaignControl(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	var err error
	switch action := r.PathValue("action"); action {
	case "pause":
		_, _, err = s.opts.Campaigns.Pause(ctx, tid, id)
	case "resume":
		_, _, err = s.opts.Campaigns.Resume(ctx, tid, id)
	case "cancel":
		_, _, err = s.opts.Campaigns.Cancel(ctx, tid, id)
	default:
		s.errorPage(w, r, http.StatusNotFound, "Not found", "No such action.")
		return
	}
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showCampaign(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/campaigns/"+url.PathEscape(id)+"?done="+r.PathValue("action"), http.StatusSeeOther)
}
