package web

import (
	"context"
	"errors"
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
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
)

// The server-rendered interface of the tenants' teams (issue 14): every
// page is an entry of the route table with its permission, checked by
// requirePage; every form posts the session's CSRF token, checked by
// authenticate, behind http.CrossOriginProtection. The pages work without
// JavaScript: progress pages refresh themselves with a meta refresh, charts
// are SVG drawn on the server.

// uiAppRoutes are the pages past sign-in: dashboard, contacts, lists,
// templates, campaigns, administration and audit.
func (s *Server) uiAppRoutes() []Route {
	cr, cw, ci := string(access.ContactsRead), string(access.ContactsWrite), string(access.ContactsImport)
	lr, lw := string(access.ListsRead), string(access.ListsWrite)
	var rs []Route
	if s.opts.Contacts != nil {
		rs = append(rs,
			Route{"GET /contacts", cr, s.contactsPage},
			Route{"GET /contacts/new", cw, s.contactNewPage},
			Route{"POST /contacts/new", cw, s.contactCreate},
			Route{"GET /contacts/{id}", cr, s.contactPage},
			Route{"POST /contacts/{id}", cw, s.contactUpdate},
			Route{"POST /contacts/{id}/consent", cw, s.contactConsent},
			Route{"POST /contacts/{id}/delete", cw, s.contactDelete},
			Route{"POST /contacts/{id}/lists", lw, s.contactLists},
			Route{"GET /contacts/import", ci, s.importPage},
			Route{"POST /contacts/import", ci, s.importSubmit},
			Route{"GET /contacts/imports/{id}", ci, s.importJobPage},
			Route{"GET /contacts/imports/{id}/errors.csv", ci, s.importErrorsCSV},
			Route{"GET /lists", lr, s.listsPage},
			Route{"POST /lists", lw, s.listCreate},
			Route{"POST /lists/{id}/delete", lw, s.listDelete},
			Route{"POST /segments", lr, s.segmentSubmit},
			Route{"POST /segments/{id}/delete", lw, s.segmentDelete},
		)
	}
	if s.opts.Campaigns != nil && s.opts.Templates != nil {
		rs = append(rs, s.uiCampaignRoutes()...)
	}
	if s.opts.Router != nil {
		rs = append(rs, Route{"GET /messages", string(access.MessagesRead), s.messagePage})
	}
	rs = append(rs, s.uiAdminRoutes()...)
	rs = append(rs, s.uiPrivacyRoutes()...)
	rs = append(rs, s.uiSettingsRoutes()...)
	return rs
}

// ---- formatting helpers of the templates ----

func uiWhen(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

func uiPct(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v*100, 'f', 1, 64) + " %"
}

func uiSecs(v *float64) string {
	if v == nil {
		return "—"
	}
	d := time.Duration(*v * float64(time.Second))
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

func uiNum(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	default:
		return fmt.Sprint(v)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune('\u202f') // narrow no-break space, as SI
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func uiValue(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// flashData carries the message shown at the top of a page.
type flashData struct{ Err, Msg string }

func (f flashData) flash() (string, string) { return f.Err, f.Msg }

// notice reads the one-word notice of a redirect (?done=...), so that a
// message survives the redirect after a POST without any state.
func notice(r *http.Request, msgs map[string]string) string {
	return msgs[r.URL.Query().Get("done")]
}

// uiErrorMessage turns a domain error into a message for a form; ok is
// false for an unexpected error (a 500).
func uiErrorMessage(err error) (status int, msg string, ok bool) {
	var cve *campaigns.ValidationError
	var tve *templates.ValidationError
	var ove *contacts.ValidationError
	var ave *access.ValidationError
	var nve *tenants.ValidationError
	switch {
	case errors.As(err, &cve):
		return http.StatusUnprocessableEntity, cve.Error(), true
	case errors.As(err, &tve):
		return http.StatusUnprocessableEntity, tve.Error(), true
	case errors.As(err, &ove):
		return http.StatusUnprocessableEntity, ove.Error(), true
	case errors.As(err, &ave):
		return http.StatusUnprocessableEntity, ave.Error(), true
	case errors.As(err, &nve):
		return http.StatusUnprocessableEntity, nve.Error(), true
	case errors.Is(err, campaigns.ErrNotFound), errors.Is(err, templates.ErrNotFound), errors.Is(err, contacts.ErrNotFound),
		errors.Is(err, access.ErrNotFound), errors.Is(err, identity.ErrNotFound):
		return http.StatusNotFound, "Not found: it may have been deleted.", true
	case errors.Is(err, campaigns.ErrState):
		return http.StatusConflict, "Not possible in the campaign's present state: " + err.Error(), true
	case errors.Is(err, templates.ErrConflict):
		return http.StatusConflict, "Someone saved this template since you opened it: reload it and make your change again.", true
	case errors.Is(err, contacts.ErrConflict):
		return http.StatusConflict, "That is already in use (an email address, or a name).", true
	case errors.Is(err, templates.ErrRender):
		return http.StatusUnprocessableEntity, "The template does not render: " + err.Error(), true
	}
	if st, m := uiMessage(err); st != 0 {
		return st, m, true
	}
	var fe interface{ Position() int }
	if errors.As(err, &fe) {
		return http.StatusUnprocessableEntity, err.Error(), true
	}
	return 0, "", false
}

// failPage shows a domain error: an expected one on the page itself
// (re-rendered by again with the message), an unexpected one as a 500.
func (s *Server) failPage(w http.ResponseWriter, r *http.Request, err error, again func(status int, msg string)) {
	status, msg, ok := uiErrorMessage(err)
	if !ok {
		s.serverError(w, r, err)
		return
	}
	if status == http.StatusNotFound && again == nil {
		s.errorPage(w, r, status, "Not found", msg)
		return
	}
	again(status, msg)
}

func tenantOf(r *http.Request) string { return PrincipalFrom(r.Context()).TenantID }

// ---- dashboard ----

type dashboardData struct {
	User        identity.User
	Since       time.Time
	Channels    []channelStats
	Total       channelStats
	Hourly      *chart
	Contacts    int64
	Campaigns   []campaigns.Campaign
	Imports     []contacts.ImportJob
	Alerts      []string
	ShowSends   bool
	ShowContact bool
	ShowCamp    bool
	Permissions []string
	// Firing are the tenant's firing alerts (reports:read, with the
	// supervision service).
	Firing     []alerts.Alert
	ShowAlerts bool
	// OpenRequests are the open subject requests, soonest due first
	// (privacy:requests); Overdue counts those past their deadline.
	OpenRequests []privacy.Request
	Overdue      int
	ShowPrivacy  bool
}

func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	ctx := r.Context()
	d := dashboardData{Permissions: p.PermissionList()}
	u, err := s.opts.Identity.GetUser(ctx, p.TenantID, p.UserID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d.User = u
	now := s.now().UTC()
	d.Since = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	if p.Has(string(access.ReportsRead)) || p.Has(string(access.MessagesRead)) || p.Has(string(access.CampaignsRead)) {
		d.ShowSends = true
		st, hours, err := s.sendStats(ctx, p.TenantID, d.Since, now)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d.Channels = st
		for _, c := range st {
			d.Total.add(c)
		}
		d.Total.finish()
		d.Hourly = barChart("Messages accepted per hour today (UTC)", hours, hourLabels(len(hours)))
		if d.Total.Failed > 0 {
			d.Alerts = append(d.Alerts, fmt.Sprintf("%d message(s) failed today.", d.Total.Failed))
		}
		if d.Total.Unknown > 0 {
			d.Alerts = append(d.Alerts, fmt.Sprintf("%d message(s) have an unknown outcome (the connector did not answer): check them before any resend.", d.Total.Unknown))
		}
		if d.Total.Deliverability != nil && *d.Total.Deliverability < 0.9 && d.Total.HandedOff >= 20 {
			d.Alerts = append(d.Alerts, "Deliverability is below 90 % today.")
		}
	}
	if s.opts.Contacts != nil && p.Has(string(access.ContactsRead)) {
		d.ShowContact = true
		if d.Contacts, err = s.opts.Contacts.Count(ctx, p.TenantID); err != nil {
			s.serverError(w, r, err)
			return
		}
		if p.Has(string(access.ContactsImport)) {
			jobs, err := s.opts.Contacts.ImportJobs(ctx, p.TenantID)
			if err == nil {
				for _, j := range jobs {
					if len(d.Imports) == 3 {
						break
					}
					d.Imports = append(d.Imports, j)
					if j.Status == contacts.JobFailed {
						d.Alerts = append(d.Alerts, "An import failed: "+j.FileName)
					}
				}
			}
		}
	}
	if s.opts.Campaigns != nil && p.Has(string(access.CampaignsRead)) {
		d.ShowCamp = true
		list, err := s.opts.Campaigns.List(ctx, p.TenantID)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		for _, c := range list {
			if len(d.Campaigns) == 5 {
				break
			}
			d.Campaigns = append(d.Campaigns, c)
		}
	}
	if s.opts.Monitor != nil && p.Has(string(access.ReportsRead)) {
		d.ShowAlerts = true
		if d.Firing, err = s.dashboardAlerts(ctx, p.TenantID); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if s.opts.Privacy != nil && p.Has(string(access.PrivacyRequests)) {
		d.ShowPrivacy = true
		open, err := s.opts.Privacy.Requests(ctx, p.TenantID, true)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		sort.SliceStable(open, func(i, j int) bool { return open[i].DueAt.Before(open[j].DueAt) })
		for _, q := range open {
			if q.Overdue {
				d.Overdue++
			}
		}
		d.OpenRequests = open
	}
	s.page(w, r, http.StatusOK, "dashboard", "Dashboard", "dashboard", d)
}

func hourLabels(n int) []string {
	out := make([]string, n)
	for i := range out {
		if i%3 == 0 {
			out[i] = fmt.Sprintf("%02d h", i)
		}
	}
	return out
}

// channelStats are one channel's messages accepted since a time.
type channelStats struct {
	Channel                                             string
	Accepted, Pending, Sent, Delivered, Bounced, Failed int64
	Unknown, Suppressed, HandedOff                      int64
	Deliverability, ToSent, ToDelivered                 *float64
	nSent, nDelivered                                   int64
	sumSent, sumDelivered                               float64
}

func (c *channelStats) add(o channelStats) {
	c.Accepted += o.Accepted
	c.Pending += o.Pending
	c.Sent += o.Sent
	c.Delivered += o.Delivered
	c.Bounced += o.Bounced
	c.Failed += o.Failed
	c.Unknown += o.Unknown
	c.Suppressed += o.Suppressed
	c.nSent += o.nSent
	c.nDelivered += o.nDelivered
	c.sumSent += o.sumSent
	c.sumDelivered += o.sumDelivered
}

func (c *channelStats) finish() {
	c.HandedOff = c.Sent + c.Delivered + c.Bounced
	if c.HandedOff > 0 {
		v := float64(c.Delivered) / float64(c.HandedOff)
		c.Deliverability = &v
	}
	if c.nSent > 0 {
		v := c.sumSent / float64(c.nSent) / 1e6
		c.ToSent = &v
	}
	if c.nDelivered > 0 {
		v := c.sumDelivered / float64(c.nDelivered) / 1e6
		c.ToDelivered = &v
	}
}

// sendStats reads the tenant's messages accepted since a time, by channel
// and state, with their mean transit times, and the count per hour.
func (s *Server) sendStats(ctx context.Context, tenantID string, since, now time.Time) ([]channelStats, []int64, error) {
	by := map[string]*channelStats{}
	get := func(ch string) *channelStats {
		if by[ch] == nil {
			by[ch] = &channelStats{Channel: ch}
		}
		return by[ch]
	}
	hours := make([]int64, 24)
	sinceUS := store.Micros(since)
	err := s.opts.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT channel, state, count(*) FROM messages WHERE tenant_id = $1 AND accepted_at >= $2 GROUP BY channel, state`, sinceUS)
		if err != nil {
			return err
		}
		for rows.Next() {
			var ch, st string
			var n int64
			if err := rows.Scan(&ch, &st, &n); err != nil {
				_ = rows.Close() // rows.Err reports what matters
				return err
			}
			c := get(ch)
			c.Accepted += n
			switch st {
			case "sent":
				c.Sent += n
			case "delivered":
				c.Delivered += n
			case "bounced":
				c.Bounced += n
			case "failed":
				c.Failed += n
			case "unknown":
				c.Unknown += n
			case "suppressed":
				c.Suppressed += n
			default:
				c.Pending += n
			}
		}
		_ = rows.Close() // rows.Err reports what matters
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT channel, count(sent_at), CAST(COALESCE(sum(sent_at - accepted_at), 0) AS DOUBLE PRECISION),
			count(delivered_at), CAST(COALESCE(sum(delivered_at - accepted_at), 0) AS DOUBLE PRECISION)
			FROM messages WHERE tenant_id = $1 AND accepted_at >= $2 GROUP BY channel`, sinceUS)
		if err != nil {
			return err
		}
		for rows.Next() {
			var ch string
			var ns, nd int64
			var ss, sd float64
			if err := rows.Scan(&ch, &ns, &ss, &nd, &sd); err != nil {
				_ = rows.Close() // rows.Err reports what matters
				return err
			}
			c := get(ch)
			c.nSent, c.sumSent, c.nDelivered, c.sumDelivered = ns, ss, nd, sd
		}
		_ = rows.Close() // rows.Err reports what matters
		if err := rows.Err(); err != nil {
			return err
		}
		// Hour numbers since the epoch (since is a UTC midnight).
		rows, err = tx.Query(ctx, `SELECT accepted_at / 3600000000, count(*) FROM messages WHERE tenant_id = $1 AND accepted_at >= $2 GROUP BY 1`, sinceUS)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h, n int64
			if err := rows.Scan(&h, &n); err != nil {
				return err
			}
			h -= sinceUS / 3600000000
			if h >= 0 && h < 24 {
				hours[h] += n
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("web: send statistics: %w", err)
	}
	out := make([]channelStats, 0, len(by))
	for _, c := range by {
		c.finish()
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out, hours, nil
}

// ---- message trace ----

// messagePage looks a message up by id and shows its trace (MSG-5): each
// step from acceptance to hand-off and receipt.
func (s *Server) messagePage(w http.ResponseWriter, r *http.Request) {
	d := struct {
		flashData
		ID string
		M  *router.Message
	}{ID: strings.TrimSpace(r.URL.Query().Get("id"))}
	status := http.StatusOK
	if d.ID != "" {
		m, err := s.opts.Router.Get(r.Context(), tenantOf(r), d.ID)
		switch {
		case err == nil:
			d.M = &m
		case errors.Is(err, router.ErrNotFound):
			status, d.Err = http.StatusNotFound, "No message with that id in your organisation."
		default:
			var ve *router.ValidationError
			if !errors.As(err, &ve) {
				s.serverError(w, r, err)
				return
			}
			status, d.Err = http.StatusBadRequest, "That is not a message id."
		}
	}
	s.page(w, r, status, "message", "Message trace", "messages", d)
}

// ---- account: sessions and the inactivity keep-alive ----

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	list, err := s.opts.Identity.ListSessions(r.Context(), p.TenantID, p.UserID, p.SessionHash)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := struct {
		flashData
		Sessions []identity.Session
	}{Sessions: list}
	d.Msg = notice(r, map[string]string{"revoked": "The session is signed out."})
	s.page(w, r, http.StatusOK, "sessions", "Your sessions", "account", d)
}

func (s *Server) sessionRevoke(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.opts.Identity.RevokeSession(r.Context(), p.TenantID, r.PostFormValue("id"), p.UserID); err != nil {
		if errors.Is(err, identity.ErrNotFound) {
			s.errorPage(w, r, http.StatusNotFound, "Not found", "No such session of yours.")
			return
		}
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, "/account/sessions?done=revoked", http.StatusSeeOther)
}

// keepalive is what app.js calls when the user chooses to stay signed in:
// the authenticated request itself renews the session's idle timer.
func (s *Server) keepalive(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// ---- contacts ----

type contactsData struct {
	Query, Filter, ListID, SegmentID, Scope string
	Contacts                                []contacts.Contact
	Next                                    string
	Searched                                bool
	Lists                                   []contacts.List
	Total                                   int64
	Err                                     string
}

func (d contactsData) flash() (string, string) { return d.Err, "" }

func (s *Server) contactsPage(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	q := r.URL.Query()
	d := contactsData{Query: strings.TrimSpace(q.Get("q")), Filter: q.Get("filter"), ListID: q.Get("list"), SegmentID: q.Get("segment")}
	svc := s.opts.Contacts
	var err error
	if d.Lists, err = svc.Lists(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	if d.Total, err = svc.Count(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	status := http.StatusOK
	switch {
	case d.Query != "":
		// Search by the blind index: the exact address, never a scan.
		d.Searched = true
		if strings.Contains(d.Query, "@") {
			c, err := svc.FindByEmail(ctx, tid, d.Query)
			switch {
			case err == nil:
				d.Contacts = []contacts.Contact{c}
			case errors.Is(err, contacts.ErrNotFound):
			default:
				if st, msg, ok := uiErrorMessage(err); ok {
					status, d.Err = st, msg
				} else {
					s.serverError(w, r, err)
					return
				}
			}
		} else {
			list, err := svc.FindByPhone(ctx, tid, d.Query)
			if err != nil {
				if st, msg, ok := uiErrorMessage(err); ok {
					status, d.Err = st, msg
				} else {
					s.serverError(w, r, err)
					return
				}
			}
			d.Contacts = list
		}
	default:
		pg, err := svc.List(ctx, tid, contacts.ListOptions{Filter: d.Filter, ListID: d.ListID, SegmentID: d.SegmentID, Cursor: q.Get("cursor"), Limit: 25})
		if err != nil {
			if st, msg, ok := uiErrorMessage(err); ok {
				status, d.Err = st, msg
			} else {
				s.serverError(w, r, err)
				return
			}
		}
		d.Contacts = pg.Contacts
		if pg.NextCursor != "" {
			v := url.Values{"cursor": {pg.NextCursor}}
			for _, k := range []string{"filter", "list", "segment"} {
				if q.Get(k) != "" {
					v.Set(k, q.Get(k))
				}
			}
			d.Next = "/contacts?" + v.Encode()
		}
	}
	s.page(w, r, status, "contacts", "Contacts", "contacts", d)
}

type contactData struct {
	flashData
	Lists    []contacts.List
	New      bool
	Contact  contacts.Contact
	History  []contacts.ConsentEvent
	Statuses []string
}

func (s *Server) contactNewPage(w http.ResponseWriter, r *http.Request) {
	s.page(w, r, http.StatusOK, "contact", "New contact", "contacts", contactData{New: true})
}

func contactForm(r *http.Request) contacts.Contact {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	return contacts.Contact{Email: f("email"), Phone: f("phone"), FirstName: f("first_name"), LastName: f("last_name"),
		Locale: f("locale"), TimeZone: f("timezone"), Status: contacts.Status(f("status"))}
}

func (s *Server) contactCreate(w http.ResponseWriter, r *http.Request) {
	c := contactForm(r)
	nc := contacts.NewContact{Email: c.Email, Phone: c.Phone, FirstName: c.FirstName, LastName: c.LastName, Locale: c.Locale, TimeZone: c.TimeZone, Source: "admin"}
	created, err := s.opts.Contacts.Create(r.Context(), tenantOf(r), nc)
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) {
			s.page(w, r, st, "contact", "New contact", "contacts", contactData{New: true, Contact: c, flashData: flashData{Err: msg}})
		})
		return
	}
	http.Redirect(w, r, "/contacts/"+url.PathEscape(created.ID)+"?done=created", http.StatusSeeOther)
}

func (s *Server) contactPage(w http.ResponseWriter, r *http.Request) {
	s.showContact(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"created": "The contact is created.", "saved": "Saved.", "consent": "The consent is recorded, with its proof.",
		"listed": "The list is updated.", "unchanged": "Nothing to change: the contact was already (or not) in that list."})}, nil)
}

func (s *Server) showContact(w http.ResponseWriter, r *http.Request, status int, fl flashData, edited *contacts.Contact) {
	ctx, tid := r.Context(), tenantOf(r)
	c, err := s.opts.Contacts.Get(ctx, tid, r.PathValue("id"))
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	hist, err := s.opts.Contacts.ConsentHistory(ctx, tid, c.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	// Newest proof first.
	for i, j := 0, len(hist)-1; i < j; i, j = i+1, j-1 {
		hist[i], hist[j] = hist[j], hist[i]
	}
	if edited != nil {
		edited.ID, edited.Consents, edited.CreatedAt, edited.UpdatedAt, edited.Source = c.ID, c.Consents, c.CreatedAt, c.UpdatedAt, c.Source
		c = *edited
	}
	name := strings.TrimSpace(c.FirstName + " " + c.LastName)
	if name == "" {
		name = "Contact"
	}
	lists, err := s.opts.Contacts.Lists(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "contact", name, "contacts", contactData{flashData: fl, Contact: c, History: hist, Lists: lists,
		Statuses: []string{string(contacts.StatusActive), string(contacts.StatusUnsubscribed), string(contacts.StatusBounced)}})
}

func (s *Server) contactUpdate(w http.ResponseWriter, r *http.Request) {
	c := contactForm(r)
	p := contacts.Patch{Email: &c.Email, Phone: &c.Phone, FirstName: &c.FirstName, LastName: &c.LastName, Locale: &c.Locale, TimeZone: &c.TimeZone}
	if c.Status != "" && c.Status != contacts.StatusBlocklisted {
		p.Status = &c.Status
	}
	if _, err := s.opts.Contacts.Update(r.Context(), tenantOf(r), r.PathValue("id"), p); err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showContact(w, r, st, flashData{Err: msg}, &c) })
		return
	}
	http.Redirect(w, r, "/contacts/"+url.PathEscape(r.PathValue("id"))+"?done=saved", http.StatusSeeOther)
}

func (s *Server) contactConsent(w http.ResponseWriter, r *http.Request) {
	in := contacts.ConsentInput{Channel: contacts.Channel(r.PostFormValue("channel")), Purpose: strings.TrimSpace(r.PostFormValue("purpose")),
		Source: contacts.SourceAdmin, Wording: strings.TrimSpace(r.PostFormValue("wording"))}
	var err error
	if r.PostFormValue("status") == "granted" {
		_, err = s.opts.Contacts.Grant(r.Context(), tenantOf(r), r.PathValue("id"), in)
	} else {
		_, err = s.opts.Contacts.Withdraw(r.Context(), tenantOf(r), r.PathValue("id"), in)
	}
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showContact(w, r, st, flashData{Err: msg}, nil) })
		return
	}
	http.Redirect(w, r, "/contacts/"+url.PathEscape(r.PathValue("id"))+"?done=consent", http.StatusSeeOther)
}

// contactLists adds the contact to a list or removes it (lists:write).
func (s *Server) contactLists(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	var n int
	var err error
	if r.PostFormValue("op") == "remove" {
		n, err = s.opts.Contacts.RemoveFromList(ctx, tid, r.PostFormValue("list"), id)
	} else {
		n, err = s.opts.Contacts.AddToList(ctx, tid, r.PostFormValue("list"), id)
	}
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showContact(w, r, st, flashData{Err: msg}, nil) })
		return
	}
	done := "listed"
	if n == 0 {
		done = "unchanged"
	}
	http.Redirect(w, r, "/contacts/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) contactDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Contacts.Delete(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/contacts", http.StatusSeeOther)
}

// ---- lists and segments ----

type countedList struct {
	contacts.List
	Count int64
}

type countedSegment struct {
	contacts.Segment
	Count int64
	Err   string
}

type listsData struct {
	flashData
	Lists    []countedList
	Segments []countedSegment
	// The segment form, kept on an error or a count.
	SegName, SegFilter string
	SegCount           *int64
}

func (s *Server) listsPage(w http.ResponseWriter, r *http.Request) {
	d := listsData{}
	d.Msg = notice(r, map[string]string{"list": "The list is created.", "segment": "The segment is saved.", "deleted": "Deleted."})
	s.showLists(w, r, http.StatusOK, d)
}

func (s *Server) showLists(w http.ResponseWriter, r *http.Request, status int, d listsData) {
	ctx, tid := r.Context(), tenantOf(r)
	ls, err := s.opts.Contacts.Lists(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, l := range ls {
		n, err := s.opts.Contacts.CountList(ctx, tid, l.ID)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d.Lists = append(d.Lists, countedList{l, n})
	}
	segs, err := s.opts.Contacts.Segments(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, sg := range segs {
		cs := countedSegment{Segment: sg}
		if cs.Count, err = s.opts.Contacts.CountSegment(ctx, tid, sg.ID); err != nil {
			// A segment whose attribute was removed no longer compiles.
			cs.Err = "does not run: " + err.Error()
		}
		d.Segments = append(d.Segments, cs)
	}
	s.page(w, r, status, "lists", "Lists and segments", "lists", d)
}

func (s *Server) listCreate(w http.ResponseWriter, r *http.Request) {
	_, err := s.opts.Contacts.CreateList(r.Context(), tenantOf(r), strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("description")))
	if err != nil {
		s.failPage(w, r, err, func(st int, msg string) { s.showLists(w, r, st, listsData{flashData: flashData{Err: msg}}) })
		return
	}
	http.Redirect(w, r, "/lists?done=list", http.StatusSeeOther)
}

func (s *Server) listDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Contacts.DeleteList(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/lists?done=deleted", http.StatusSeeOther)
}

// segmentSubmit counts an unsaved filter (action=count, lists:read) or
// saves the segment (lists:write).
func (s *Server) segmentSubmit(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	d := listsData{SegName: strings.TrimSpace(r.PostFormValue("name")), SegFilter: strings.TrimSpace(r.PostFormValue("filter"))}
	again := func(st int, msg string) {
		d.Err = msg
		s.showLists(w, r, st, d)
	}
	if r.PostFormValue("action") == "count" {
		n, err := s.opts.Contacts.CountFilter(ctx, tid, d.SegFilter)
		if err != nil {
			s.failPage(w, r, err, again)
			return
		}
		d.SegCount = &n
		s.showLists(w, r, http.StatusOK, d)
		return
	}
	if !PrincipalFrom(ctx).Has(string(access.ListsWrite)) {
		s.recordDenied(ctx, PrincipalFrom(ctx), string(access.ListsWrite), r)
		s.forbiddenPage(w, r, string(access.ListsWrite))
		return
	}
	if _, err := s.opts.Contacts.CreateSegment(ctx, tid, d.SegName, strings.TrimSpace(r.PostFormValue("description")), d.SegFilter); err != nil {
		s.failPage(w, r, err, again)
		return
	}
	http.Redirect(w, r, "/lists?done=segment", http.StatusSeeOther)
}

func (s *Server) segmentDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Contacts.DeleteSegment(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/lists?done=deleted", http.StatusSeeOther)
}
