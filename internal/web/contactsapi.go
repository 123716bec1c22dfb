package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/contacts/filter"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The contacts API (CORE-2, CORE-3, PRIV-1, PRIV-2, PRIV-5): contacts and
// their consents, the attribute schema, the blocklist, lists, segments, CSV
// import and CSV / JSON Lines export, all under /api/v1, plus the public
// pages behind the links sent to people: one-click unsubscribe (RFC 8058)
// and double opt-in confirmation.
//
// The tenant is always the caller's own: every id is looked up inside it, so
// another tenant's contact, list, segment or import job is answered 404 (or
// an empty result for a search), exactly like an unknown one. The domain
// service writes the change and personal-data access events (LOG-1, LOG-2);
// this layer adds none, except that the public links record who acted as
// the link itself.
//
// Bad input never reaches the store as such: ids must look like ids, text
// must be UTF-8 without NUL characters (PostgreSQL refuses them), and the
// domain's errors map to 4xx problem documents: a *contacts.ValidationError
// is 422 naming the field, a filter error 422 with its position,
// ErrNotFound 404, ErrConflict 409, ErrBlocklisted 409 "blocklisted", an
// empty or unreadable import file 422, a resumed import with another file
// 409.

// Limits of this API.
const (
	// contactsBodyLimit bounds the JSON bodies (1000 contact ids fit).
	contactsBodyLimit = 256 << 10
	// ImportMaxBytes bounds an import file sent to the API; the server's
	// request body limit (http.max_body_bytes) applies too, whichever is
	// smaller. Larger files go through `relais contacts import`.
	ImportMaxBytes = 1 << 30
	// importFieldLimit bounds one option field of a multipart import, and
	// importMaxParts the number of parts.
	importFieldLimit = 64 << 10
	importMaxParts   = 64
	// importWait is how long POST /api/v1/contacts/imports waits for a
	// small import to finish before it answers with the running job.
	importWait = 2 * time.Second
	// maxConcurrentImports bounds the imports a server runs at once (each
	// spools its file to disk and keeps a pool of workers busy).
	maxConcurrentImports = 4
	// uploadIdle is how long an import upload or an export download may
	// stall before the connection's deadlines end it; the server's read
	// and write timeouts are pushed back as long as data flows.
	uploadIdle = 2 * time.Minute
	// importErrorsPage is the default page of GET .../imports/{id}/errors.
	importErrorsPage = 100
)

// contactRoutes are the contacts, consent, lists, segments, import and
// export endpoints, and the public unsubscribe and confirmation pages.
func (s *Server) contactRoutes() []Route {
	cr, cw := string(access.ContactsRead), string(access.ContactsWrite)
	ci, ce := string(access.ContactsImport), string(access.ContactsExport)
	lr, lw := string(access.ListsRead), string(access.ListsWrite)
	return []Route{
		{"POST /api/v1/contacts", cw, s.withContacts(s.createContact)},
		{"GET /api/v1/contacts", cr, s.withContacts(s.listContacts)},
		{"GET /api/v1/contacts/export", ce, s.withContacts(s.exportContacts)},
		{"GET /api/v1/contacts/{id}", cr, s.withContacts(s.getContact)},
		{"PATCH /api/v1/contacts/{id}", cw, s.withContacts(s.updateContact)},
		{"DELETE /api/v1/contacts/{id}", cw, s.withContacts(s.deleteContact)},
		{"POST /api/v1/contacts/{id}/consents", cw, s.withContacts(s.setConsent)},
		// GET /api/v1/contacts/{id}/consents (contacts:read) and GET
		// /api/v1/contacts/imports/{id} (contacts:import) overlap for the
		// mux (".../imports/consents" matches both), so one pattern serves
		// them and each branch checks its own permission, recording a
		// refusal like the route wrapper does.
		{"GET /api/v1/contacts/{id}/{sub}", PermAuthenticated, s.withContacts(s.contactSubresource)},

		{"POST /api/v1/contacts/imports", ci, s.withContacts(s.startImport)},
		{"GET /api/v1/contacts/imports", ci, s.withContacts(s.listImports)},
		{"GET /api/v1/contacts/imports/{id}/errors", ci, s.withContacts(s.importErrors)},

		{"GET /api/v1/contact-attributes", cr, s.withContacts(s.listAttributes)},
		{"GET /api/v1/contact-attributes/{key}", cr, s.withContacts(s.getAttribute)},
		{"PUT /api/v1/contact-attributes/{key}", cw, s.withContacts(s.putAttribute)},
		{"DELETE /api/v1/contact-attributes/{key}", cw, s.withContacts(s.deleteAttribute)},

		{"POST /api/v1/blocklist", cw, s.withContacts(s.block)},
		{"DELETE /api/v1/blocklist", cw, s.withContacts(s.unblock)},
		{"GET /api/v1/blocklist/check", cr, s.withContacts(s.checkBlocked)},

		{"GET /api/v1/lists", lr, s.withContacts(s.listLists)},
		{"POST /api/v1/lists", lw, s.withContacts(s.createList)},
		{"GET /api/v1/lists/{id}", lr, s.withContacts(s.getList)},
		{"PATCH /api/v1/lists/{id}", lw, s.withContacts(s.updateList)},
		{"DELETE /api/v1/lists/{id}", lw, s.withContacts(s.deleteList)},
		{"GET /api/v1/lists/{id}/count", lr, s.withContacts(s.countList)},
		{"POST /api/v1/lists/{id}/members", lw, s.withContacts(s.changeMembers(true))},
		{"DELETE /api/v1/lists/{id}/members", lw, s.withContacts(s.changeMembers(false))},

		{"GET /api/v1/segments", lr, s.withContacts(s.listSegments)},
		{"POST /api/v1/segments", lw, s.withContacts(s.createSegment)},
		{"POST /api/v1/segments/validate", lr, s.withContacts(s.validateSegment)},
		{"GET /api/v1/segments/{id}", lr, s.withContacts(s.getSegment)},
		{"PATCH /api/v1/segments/{id}", lw, s.withContacts(s.updateSegment)},
		{"DELETE /api/v1/segments/{id}", lw, s.withContacts(s.deleteSegment)},
		{"GET /api/v1/segments/{id}/count", lr, s.withContacts(s.countSegment)},

		// The links in messages: the token is the authority (no session).
		{"GET /u/{token}", PermPublic, s.unsubscribePage},
		{"POST /u/{token}", PermPublic, s.unsubscribeSubmit},
		{"GET /confirm/{token}", PermPublic, s.confirmPage},
		{"POST /confirm/{token}", PermPublic, s.confirmSubmit},
	}
}

// contactsHandler is a handler of the tenant API, given the service and
// the caller's tenant.
type contactsHandler func(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string)

// withContacts hands a handler the contacts service and the caller's
// tenant; the route wrapper has authenticated the caller already.
func (s *Server) withContacts(h contactsHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc := s.opts.Contacts
		if svc == nil {
			problem.Write(w, r, problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable",
				Detail: "The contacts service is not configured on this server."})
			return
		}
		p := PrincipalFrom(r.Context())
		if p == nil || p.TenantID == "" {
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized, Title: "Authentication required",
				Detail: "Sign in (POST /api/v1/auth/login) or send an access token (Authorization: Bearer)."})
			return
		}
		h(w, r, svc, p.TenantID)
	}
}

// allow checks one more permission inside a handler, with the same answer
// and audit record as the route wrapper.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, perm access.Permission) bool {
	p := PrincipalFrom(r.Context())
	if p.Has(string(perm)) {
		return true
	}
	if p != nil {
		s.recordDenied(r.Context(), p, string(perm), r)
	}
	problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Forbidden",
		Detail: "This needs the " + string(perm) + " permission."})
	return false
}

// --- errors and input checks -------------------------------------------

// contactsError maps the contacts service's errors to problem documents;
// anything else is a server error.
func (s *Server) contactsError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *contacts.ValidationError
	var fe *filter.Error
	switch {
	case errors.As(err, &ve):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
	case errors.As(err, &fe):
		writeFilterProblem(w, r, fe)
	case errors.Is(err, contacts.ErrBlocklisted):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "blocklisted", Title: "Blocklisted",
			Detail: "An address of this contact is on the tenant's blocklist; remove it from the blocklist first (DELETE /api/v1/blocklist)."})
	case errors.Is(err, contacts.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
			Detail: sentence(cleanContactsError(err)) + " in this tenant."})
	case errors.Is(err, contacts.ErrFileChanged):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "file_changed", Title: "Another file",
			Detail: "The file differs from the one this import job started with: send the same file to resume the job, or start a new import without job_id."})
	case errors.Is(err, contacts.ErrConflict):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict",
			Detail: sentence(cleanContactsError(err)) + "."})
	case errors.Is(err, contacts.ErrEmptyFile):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: "empty_file", Title: "Empty file",
			Detail: "The file is empty (" + cleanContactsError(err) + "): send a CSV file with a header line and contacts."})
	case errors.Is(err, contacts.ErrBadFile):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: "bad_file", Title: "File cannot be imported",
			Detail: sentence(cleanContactsError(err)) + "."})
	default:
		s.serverError(w, r, err)
	}
}

func writeFilterProblem(w http.ResponseWriter, r *http.Request, fe *filter.Error) {
	msg := fe.Msg
	if fe.Pos > 0 {
		msg = fmt.Sprintf("at position %d: %s", fe.Pos, fe.Msg)
	}
	problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: "invalid_filter", Title: "Invalid filter",
		Detail: fe.Error(), Errors: []problem.FieldError{{Field: "filter", Message: msg}}})
}

// cleanContactsError is the message of a domain error without the package
// prefix and the sentinels' own text ("contacts: already exists: a list
// with this name exists" -> "a list with this name exists").
func cleanContactsError(err error) string {
	msg := strings.ReplaceAll(err.Error(), "contacts: ", "")
	for _, sentinel := range []error{contacts.ErrConflict, contacts.ErrBadFile, contacts.ErrEmptyFile} {
		msg = strings.Replace(msg, sentinel.Error()+": ", "", 1)
	}
	return strings.TrimSpace(msg)
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

func invalidInput(w http.ResponseWriter, r *http.Request, field, msg string) {
	problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
		Detail: field + ": " + msg, Errors: []problem.FieldError{{Field: field, Message: msg}}})
}

func notFound(w http.ResponseWriter, r *http.Request, what string) {
	problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
		Detail: "No such " + what + " in this tenant."})
}

// validID reports whether s can be an id of this API (UUIDs; at most 64
// letters, digits, - and _). Anything else is not looked up.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// attrKeyRE is the form of an attribute key (the service's rule).
var attrKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// cleanText reports whether s is UTF-8 without NUL characters, which the
// store cannot hold.
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// hasNUL reports whether any string reachable from v holds a NUL
// character (JSON allows "\u0000"; PostgreSQL's text and jsonb do not).
func hasNUL(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return strings.ContainsRune(v.String(), 0)
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasNUL(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if hasNUL(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if hasNUL(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if hasNUL(it.Key()) || hasNUL(it.Value()) {
				return true
			}
		}
	}
	return false
}

// decode reads a JSON body into dst (strictly, see problem.DecodeJSON)
// and refuses NUL characters; it writes the problem and returns false on
// failure.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if p := problem.DecodeJSON(w, r, dst, min(s.maxBody, contactsBodyLimit)); p != nil {
		problem.Write(w, r, *p)
		return false
	}
	if hasNUL(reflect.ValueOf(dst)) {
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: "Text values must not contain NUL characters (\\u0000)."})
		return false
	}
	return true
}

// query returns the query parameters once checked: UTF-8 text without NUL
// characters, and only the names allowed.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Invalid query",
			Detail: "The query string is malformed; encode its values (application/x-www-form-urlencoded)."})
		return nil, false
	}
	for k, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			invalidInput(w, r, k, "unknown query parameter; this endpoint takes "+strings.Join(allowed, ", "))
			return nil, false
		}
		for _, v := range vs {
			if !cleanText(v) {
				invalidInput(w, r, k, "must be UTF-8 text without NUL characters")
				return nil, false
			}
		}
	}
	return q, true
}

// optionalBool parses a boolean parameter ("" is false).
func optionalBool(v string) (bool, bool) {
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	return b, err == nil
}

// --- contacts -----------------------------------------------------------

func (s *Server) createContact(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req contacts.NewContact
	if !s.decode(w, r, &req) {
		return
	}
	req.Source = string(contacts.SourceAPI)
	c, err := svc.Create(r.Context(), tenantID, req)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/contacts/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) getContact(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "contact")
		return
	}
	c, err := svc.Get(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) updateContact(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	var p contacts.Patch
	if !s.decode(w, r, &p) {
		return
	}
	if !validID(id) {
		notFound(w, r, "contact")
		return
	}
	c, err := svc.Update(r.Context(), tenantID, id, p)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "contact")
		return
	}
	if err := svc.Delete(r.Context(), tenantID, id); err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listContacts is the contact search: by email or phone (blind index), or
// a page of contacts filtered by status, list, segment or filter.
func (s *Server) listContacts(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	q, ok := query(w, r, "email", "phone", "status", "list", "segment", "filter", "cursor", "limit")
	if !ok {
		return
	}
	email, phone := q.Get("email"), q.Get("phone")
	if email != "" || phone != "" {
		if email != "" && phone != "" {
			invalidInput(w, r, "email", "give email or phone, not both")
			return
		}
		for _, k := range []string{"status", "list", "segment", "filter", "cursor", "limit"} {
			if q.Has(k) {
				invalidInput(w, r, k, "a search by email or phone takes no other parameter")
				return
			}
		}
		var found []contacts.Contact
		if email != "" {
			c, err := svc.FindByEmail(r.Context(), tenantID, email)
			switch {
			case errors.Is(err, contacts.ErrNotFound):
			case err != nil:
				s.contactsError(w, r, err)
				return
			default:
				found = append(found, c)
			}
		} else {
			cs, err := svc.FindByPhone(r.Context(), tenantID, phone)
			if err != nil {
				s.contactsError(w, r, err)
				return
			}
			found = cs
		}
		if found == nil {
			found = []contacts.Contact{}
		}
		writeJSON(w, http.StatusOK, contacts.Page{Contacts: found})
		return
	}
	o := contacts.ListOptions{Status: contacts.Status(q.Get("status")), ListID: q.Get("list"), SegmentID: q.Get("segment"),
		Filter: q.Get("filter"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > contacts.MaxPageSize {
			invalidInput(w, r, "limit", fmt.Sprintf("must be an integer from 1 to %d", contacts.MaxPageSize))
			return
		}
		o.Limit = n
	}
	if o.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(o.Cursor)
		if err != nil || !validID(string(b)) {
			invalidInput(w, r, "cursor", "is not a cursor returned by a previous page (next_cursor)")
			return
		}
	}
	if o.ListID != "" && !validID(o.ListID) {
		notFound(w, r, "list")
		return
	}
	if o.SegmentID != "" && !validID(o.SegmentID) {
		notFound(w, r, "segment")
		return
	}
	page, err := svc.List(r.Context(), tenantID, o)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// contactSubresource serves GET /api/v1/contacts/{id}/consents and GET
// /api/v1/contacts/imports/{id} (see contactRoutes).
func (s *Server) contactSubresource(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id, sub := r.PathValue("id"), r.PathValue("sub")
	switch {
	case id == "imports":
		if s.allow(w, r, access.ContactsImport) {
			s.getImport(w, r, svc, tenantID, sub)
		}
	case sub == "consents":
		if s.allow(w, r, access.ContactsRead) {
			s.consentHistory(w, r, svc, tenantID, id)
		}
	default:
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No resource at this path."})
	}
}

// consentHistory returns the proofs of a contact's consents, oldest first.
// The history outlives a deleted contact; an id that has neither history
// nor contact in this tenant is 404.
func (s *Server) consentHistory(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID, id string) {
	if !validID(id) {
		notFound(w, r, "contact")
		return
	}
	events, err := svc.ConsentHistory(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	if len(events) == 0 {
		// CanSend reads no personal data: it only says whether the
		// contact exists.
		_, reason, err := svc.CanSend(r.Context(), tenantID, id, contacts.ChannelEmail, "")
		if err != nil {
			s.contactsError(w, r, err)
			return
		}
		if reason == contacts.ReasonNotFound {
			notFound(w, r, "contact")
			return
		}
		events = []contacts.ConsentEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"contact_id": id, "events": events})
}

// consentResponse is the answer to a consent change.
type consentResponse struct {
	Consent contacts.Consent `json:"consent"`
	// ConfirmPath is the double opt-in link to send to the person (a
	// pending consent only), relative to the server's public address.
	ConfirmPath string `json:"confirm_path,omitempty"`
}

// setConsent records a consent decision (granted, withdrawn, or pending
// with a double opt-in link) with its proof: the source (api unless
// given), the IP of the request unless source_ip is given, and the wording
// or its hash and version.
func (s *Server) setConsent(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	var in contacts.ConsentInput
	if !s.decode(w, r, &in) {
		return
	}
	if !validID(id) {
		notFound(w, r, "contact")
		return
	}
	var out consentResponse
	var err error
	switch in.Status {
	case contacts.ConsentGranted:
		out.Consent, err = svc.Grant(r.Context(), tenantID, id, in)
	case contacts.ConsentWithdrawn:
		out.Consent, err = svc.Withdraw(r.Context(), tenantID, id, in)
	case contacts.ConsentPending:
		var tok string
		out.Consent, tok, err = svc.SetPending(r.Context(), tenantID, id, in)
		if err == nil {
			out.ConfirmPath = "/confirm/" + tok
		}
	default:
		invalidInput(w, r, "status", "must be granted, withdrawn or pending")
		return
	}
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// --- attribute schema ---------------------------------------------------

func (s *Server) listAttributes(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	defs, err := svc.AttributeSchema(r.Context(), tenantID)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"attributes": defs})
}

func (s *Server) getAttribute(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	key := r.PathValue("key")
	if attrKeyRE.MatchString(key) {
		defs, err := svc.AttributeSchema(r.Context(), tenantID)
		if err != nil {
			s.contactsError(w, r, err)
			return
		}
		for _, d := range defs {
			if d.Key == key {
				writeJSON(w, http.StatusOK, d)
				return
			}
		}
	}
	notFound(w, r, "attribute")
}

// attributeRequest declares an attribute; the key is in the path.
type attributeRequest struct {
	Type        contacts.AttrType `json:"type"`
	Personal    bool              `json:"personal"`
	Description string            `json:"description"`
}

// putAttribute declares an attribute (201) or re-describes it (200). Its
// type and personal flag cannot change: remove it and declare it again.
func (s *Server) putAttribute(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req attributeRequest
	if !s.decode(w, r, &req) {
		return
	}
	def, err := svc.DefineAttribute(r.Context(), tenantID, contacts.AttributeDef{Key: r.PathValue("key"), Type: req.Type,
		Personal: req.Personal, Description: req.Description})
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	status := http.StatusOK
	if def.CreatedAt.Equal(def.UpdatedAt) {
		status = http.StatusCreated
	}
	writeJSON(w, status, def)
}

func (s *Server) deleteAttribute(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	key := r.PathValue("key")
	if !attrKeyRE.MatchString(key) {
		notFound(w, r, "attribute")
		return
	}
	if err := svc.RemoveAttribute(r.Context(), tenantID, key); err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- blocklist ----------------------------------------------------------

// blockRequest names an address of the blocklist.
type blockRequest struct {
	Kind   contacts.BlockKind `json:"kind"`
	Value  string             `json:"value"`
	Reason string             `json:"reason"`
}

// block puts an address on the blocklist (idempotent); the contacts with
// it are blocklisted at once.
func (s *Server) block(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req blockRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := svc.Block(r.Context(), tenantID, req.Kind, req.Value, req.Reason); err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": req.Kind, "blocked": true})
}

func (s *Server) unblock(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req blockRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Reason != "" {
		invalidInput(w, r, "reason", "is not taken when removing an address")
		return
	}
	if err := svc.Unblock(r.Context(), tenantID, req.Kind, req.Value); err != nil {
		if errors.Is(err, contacts.ErrNotFound) {
			problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
				Detail: "That address is not on the tenant's blocklist."})
			return
		}
		s.contactsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkBlocked says whether an email (?email=) or phone (?phone=) is on
// the blocklist.
func (s *Server) checkBlocked(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	q, ok := query(w, r, "email", "phone")
	if !ok {
		return
	}
	kind, value := contacts.BlockEmail, q.Get("email")
	if q.Get("phone") != "" {
		if value != "" {
			invalidInput(w, r, "email", "give email or phone, not both")
			return
		}
		kind, value = contacts.BlockPhone, q.Get("phone")
	}
	if value == "" {
		invalidInput(w, r, "email", "give ?email= or ?phone=")
		return
	}
	blocked, err := svc.IsBlocked(r.Context(), tenantID, kind, value)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": kind, "blocked": blocked})
}

// --- lists --------------------------------------------------------------

func (s *Server) listLists(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	ls, err := svc.Lists(r.Context(), tenantID)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lists": ls})
}

// namedRequest creates a list or a segment.
type namedRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Filter      string `json:"filter"`
}

// namedPatch changes a list or a segment (nil leaves a field as it is).
type namedPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Filter      *string `json:"filter"`
}

func (s *Server) createList(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req namedRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Filter != "" {
		invalidInput(w, r, "filter", "a list has no filter; create a segment (POST /api/v1/segments)")
		return
	}
	l, err := svc.CreateList(r.Context(), tenantID, req.Name, req.Description)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/lists/"+l.ID)
	writeJSON(w, http.StatusCreated, l)
}

// listWithCount is a list with its number of members.
type listWithCount struct {
	contacts.List
	Count int64 `json:"count"`
}

func (s *Server) getList(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "list")
		return
	}
	l, err := svc.GetList(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	n, err := svc.CountList(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, listWithCount{l, n})
}

func (s *Server) updateList(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	var p namedPatch
	if !s.decode(w, r, &p) {
		return
	}
	if p.Filter != nil {
		invalidInput(w, r, "filter", "a list has no filter")
		return
	}
	if !validID(id) {
		notFound(w, r, "list")
		return
	}
	l, err := svc.UpdateList(r.Context(), tenantID, id, p.Name, p.Description)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) deleteList(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "list")
		return
	}
	if err := svc.DeleteList(r.Context(), tenantID, id); err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) countList(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "list")
		return
	}
	n, err := svc.CountList(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"list_id": id, "count": n})
}

// membersRequest names the contacts to add to or remove from a list.
type membersRequest struct {
	ContactIDs []string `json:"contact_ids"`
}

// changeMembers adds contacts to a list (every id must be a contact of the
// tenant, or nothing is added) or removes them.
func (s *Server) changeMembers(add bool) contactsHandler {
	return func(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
		id := r.PathValue("id")
		var req membersRequest
		if !s.decode(w, r, &req) {
			return
		}
		for i, cid := range req.ContactIDs {
			if !validID(cid) {
				invalidInput(w, r, fmt.Sprintf("contact_ids[%d]", i), "is not a contact id")
				return
			}
		}
		if !validID(id) {
			notFound(w, r, "list")
			return
		}
		if add {
			n, err := svc.AddToList(r.Context(), tenantID, id, req.ContactIDs...)
			if err != nil {
				s.contactsError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"list_id": id, "added": n})
			return
		}
		n, err := svc.RemoveFromList(r.Context(), tenantID, id, req.ContactIDs...)
		if err != nil {
			s.contactsError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"list_id": id, "removed": n})
	}
}

// --- segments -----------------------------------------------------------

func (s *Server) listSegments(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	segs, err := svc.Segments(r.Context(), tenantID)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"segments": segs})
}

func (s *Server) createSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req namedRequest
	if !s.decode(w, r, &req) {
		return
	}
	seg, err := svc.CreateSegment(r.Context(), tenantID, req.Name, req.Description, req.Filter)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/segments/"+seg.ID)
	writeJSON(w, http.StatusCreated, seg)
}

// validateSegment checks a filter against the tenant's attribute schema
// and counts the contacts it matches now (a preview while editing).
func (s *Server) validateSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	var req struct {
		Filter string `json:"filter"`
	}
	if !s.decode(w, r, &req) {
		return
	}
	if err := svc.ValidateFilter(r.Context(), tenantID, req.Filter); err != nil {
		s.contactsError(w, r, err)
		return
	}
	n, err := svc.CountFilter(r.Context(), tenantID, req.Filter)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "count": n})
}

func (s *Server) getSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "segment")
		return
	}
	seg, err := svc.GetSegment(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, seg)
}

func (s *Server) updateSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	var p namedPatch
	if !s.decode(w, r, &p) {
		return
	}
	if !validID(id) {
		notFound(w, r, "segment")
		return
	}
	seg, err := svc.UpdateSegment(r.Context(), tenantID, id, p.Name, p.Description, p.Filter)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, seg)
}

func (s *Server) deleteSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "segment")
		return
	}
	if err := svc.DeleteSegment(r.Context(), tenantID, id); err != nil {
		s.contactsError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) countSegment(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	if !validID(id) {
		notFound(w, r, "segment")
		return
	}
	n, err := svc.CountSegment(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"segment_id": id, "count": n})
}

// --- import -------------------------------------------------------------

// importJobView is an import job as the API shows it.
type importJobView struct {
	contacts.ImportJob
	// Progress is the share of the file committed, from 0 to 1.
	Progress float64 `json:"progress"`
	// StatusPath and ErrorsPath are where to follow the job (stored jobs).
	StatusPath string `json:"status_path,omitempty"`
	ErrorsPath string `json:"errors_path,omitempty"`
}

func viewJob(j contacts.ImportJob) importJobView {
	v := importJobView{ImportJob: j}
	switch {
	case j.Status == contacts.JobCompleted:
		v.Progress = 1
	case j.FileSize > 0:
		v.Progress = float64(j.ResumeOffset) / float64(j.FileSize)
	}
	if j.ID != "" {
		v.StatusPath = "/api/v1/contacts/imports/" + j.ID
		v.ErrorsPath = v.StatusPath + "/errors"
	}
	return v
}

// importOptionNames are the options of an import, as query parameters or
// multipart fields.
var importOptionNames = []string{"mode", "dry_run", "default_calling_code", "consent", "consent_purpose", "consent_wording",
	"consent_wording_version", "list", "mapping", "ignore_unknown_columns", "job_id", "file_name"}

// startImport takes a CSV file (a text/csv body, or the "file" part of a
// multipart/form-data body) and imports it. The body is spooled to a
// private temporary file, removed when the import ends, because the
// import reads the file twice (its SHA-256 identifies the job, so that
// sending the same file again resumes an interrupted job). Options come as
// query parameters or multipart fields:
//
//	mode                    upsert (default), add or blocklist
//	dry_run                 true: validate and count, write nothing (200)
//	default_calling_code    e.g. 33, for national phone numbers
//	consent                 channel:status[:purpose], repeatable (email:granted)
//	consent_purpose         purpose of the consent.email / consent.sms columns
//	consent_wording[_version] the wording the consents were given with
//	list                    a list id every contact joins, repeatable
//	mapping                 a JSON object: header -> target (email, attr.key, -...)
//	ignore_unknown_columns  true: skip columns that map to nothing
//	job_id                  resume this job (the same file)
//	file_name               recorded with the job (default: the part's name)
//
// A small file is imported before the answer; a large one answers 202 with
// the running job as soon as its first batch is committed: follow it at
// GET /api/v1/contacts/imports/{id}.
func (s *Server) startImport(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	limit := s.opts.MaxImportBytes // the middleware lets this route's body through up to it
	if r.ContentLength > limit {
		importTooLarge(w, r, limit)
		return
	}
	select {
	case s.importSlots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "30")
		problem.Write(w, r, problem.Problem{Status: http.StatusTooManyRequests, Code: problem.CodeRateLimited, Title: "Too many imports",
			Detail: fmt.Sprintf("This server runs at most %d imports at once; try again shortly.", maxConcurrentImports)})
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			<-s.importSlots
		}
	}()
	up, prob := s.receiveImport(w, r, limit)
	if prob != nil {
		problem.Write(w, r, *prob)
		return
	}
	dropFile := func() {
		_ = up.file.Close()
		_ = os.Remove(up.file.Name())
	}
	opts, prob := importOptions(up.fields, up.fileName)
	if prob != nil {
		dropFile()
		problem.Write(w, r, *prob)
		return
	}

	type outcome struct {
		job contacts.ImportJob
		err error
	}
	done := make(chan outcome, 1)
	started := make(chan string, 1)
	if !opts.DryRun {
		opts.Progress = func(p contacts.ImportProgress) {
			select {
			case started <- p.JobID:
			default:
			}
		}
	}
	// The import goes on if the client leaves: it is a job, followed
	// through its status.
	ctx := context.WithoutCancel(r.Context())
	handedOff = true
	go func() {
		defer func() { <-s.importSlots }()
		defer dropFile()
		defer func() {
			if rec := recover(); rec != nil {
				s.log.ErrorContext(ctx, "import panicked", "request_id", problem.RequestID(ctx), "panic", rec)
				done <- outcome{err: fmt.Errorf("import panicked: %v", rec)}
			}
		}()
		job, err := svc.Import(ctx, tenantID, up.file, opts)
		if err != nil && job.ID != "" {
			s.log.WarnContext(ctx, "import ended early", "request_id", problem.RequestID(ctx), "job", job.ID, "status", job.Status, "error", err)
		}
		done <- outcome{job, err}
	}()

	timer := time.NewTimer(importWait)
	defer timer.Stop()
	var out outcome
	var running string
	select {
	case out = <-done:
	case <-timer.C:
		select {
		case running = <-started:
		case out = <-done:
		}
	}
	if running != "" {
		job, err := svc.GetImportJob(r.Context(), tenantID, running)
		if err != nil {
			s.contactsError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/v1/contacts/imports/"+job.ID)
		writeJSON(w, http.StatusAccepted, viewJob(job))
		return
	}
	if out.err != nil && (out.job.ID == "" || opts.DryRun) {
		s.importError(w, r, out.err)
		return
	}
	if opts.DryRun { // nothing stored: the answer is the whole result
		writeJSON(w, http.StatusOK, viewJob(out.job))
		return
	}
	w.Header().Set("Location", "/api/v1/contacts/imports/"+out.job.ID)
	writeJSON(w, http.StatusAccepted, viewJob(out.job))
}

// importError maps the errors of an import that could not start: a list
// or job that does not exist is a wrong option (422), not a wrong path.
func (s *Server) importError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, contacts.ErrNotFound) {
		field, what := "list", "a list given in list is not a list of this tenant"
		if strings.HasPrefix(err.Error(), "import job") {
			field, what = "job_id", "no such import job in this tenant"
		}
		invalidInput(w, r, field, what)
		return
	}
	s.contactsError(w, r, err)
}

func importTooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	problem.Write(w, r, problem.Problem{Status: http.StatusRequestEntityTooLarge, Code: problem.CodeBodyTooLarge, Title: "File too large",
		Detail: fmt.Sprintf("This server takes import files of at most %d bytes through the API (the smaller of 1 GiB and its http.max_body_bytes setting); split the file, or import it with `relais contacts import` on the server.", limit)})
}

// upload is a received import: the spooled file and the option fields.
type upload struct {
	file     *os.File
	fileName string
	fields   url.Values
}

// receiveImport reads the request into a private temporary file (0600),
// with the options from the query string and the multipart fields.
func (s *Server) receiveImport(w http.ResponseWriter, r *http.Request, limit int64) (*upload, *problem.Problem) {
	fields, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Invalid query",
			Detail: "The query string is malformed; encode its values (application/x-www-form-urlencoded)."}
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	body := &deadlineReader{r: r.Body, rc: http.NewResponseController(w)}
	up := &upload{fields: fields}
	switch mt {
	case "text/csv", "application/csv", "text/plain":
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, &problem.Problem{Status: http.StatusUnsupportedMediaType, Code: problem.CodeUnsupportedMediaType,
				Detail: "The file must be UTF-8 (charset=utf-8, or no charset)."}
		}
		f, p := spoolImport(body, limit)
		if p != nil {
			return nil, p
		}
		up.file = f
	case "multipart/form-data":
		if p := up.readMultipart(body, params["boundary"], limit); p != nil {
			if up.file != nil {
				_ = up.file.Close()
				_ = os.Remove(up.file.Name())
			}
			return nil, p
		}
	default:
		return nil, &problem.Problem{Status: http.StatusUnsupportedMediaType, Code: problem.CodeUnsupportedMediaType,
			Detail: "Send the CSV file as the body with Content-Type text/csv, or as the \"file\" part of a multipart/form-data body."}
	}
	return up, nil
}

// readMultipart reads the parts: the file ("file", or any part with a
// file name) is spooled, the other parts are option fields.
func (up *upload) readMultipart(body io.Reader, boundary string, limit int64) *problem.Problem {
	if boundary == "" {
		return &problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Malformed multipart body",
			Detail: "The multipart/form-data Content-Type has no boundary."}
	}
	mr := multipart.NewReader(body, boundary)
	malformed := func() *problem.Problem {
		return &problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Malformed multipart body",
			Detail: "The multipart/form-data body could not be read to its end; check its boundary and parts."}
	}
	for n := 0; ; n++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if isTooLarge(err) {
				return tooLargeProblem(limit)
			}
			return malformed()
		}
		if n >= importMaxParts {
			return &problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
				Detail: fmt.Sprintf("A multipart import has at most %d parts.", importMaxParts)}
		}
		name := part.FormName()
		if name == "file" || part.FileName() != "" {
			if up.file != nil {
				return &problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
					Detail: "Send one file per import.", Errors: []problem.FieldError{{Field: "file", Message: "only one file per import"}}}
			}
			up.fileName = part.FileName()
			f, p := spoolImport(part, limit)
			if p != nil {
				return p
			}
			up.file = f
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, importFieldLimit+1))
		if err != nil {
			if isTooLarge(err) {
				return tooLargeProblem(limit)
			}
			return malformed()
		}
		if len(b) > importFieldLimit {
			return &problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
				Detail: fmt.Sprintf("Field %q is longer than %d bytes.", shortName(name), importFieldLimit)}
		}
		up.fields.Add(name, string(b))
	}
	if up.file == nil {
		return &problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: "The multipart body has no file: send the CSV file in a part named \"file\".",
			Errors: []problem.FieldError{{Field: "file", Message: "is required"}}}
	}
	return nil
}

func shortName(s string) string {
	if len(s) > 64 || !cleanText(s) {
		return "(unnamed)"
	}
	return s
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func tooLargeProblem(limit int64) *problem.Problem {
	return &problem.Problem{Status: http.StatusRequestEntityTooLarge, Code: problem.CodeBodyTooLarge, Title: "File too large",
		Detail: fmt.Sprintf("This server takes import files of at most %d bytes through the API (the smaller of 1 GiB and its http.max_body_bytes setting); split the file, or import it with `relais contacts import` on the server.", limit)}
}

// spoolImport copies an upload to a new private temporary file (mode
// 0600, in the system's temporary directory) and rewinds it.
func spoolImport(src io.Reader, limit int64) (*os.File, *problem.Problem) {
	f, err := os.CreateTemp("", "relais-import-*.csv")
	if err != nil {
		return nil, &problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable",
			Detail: "The server could not store the upload; try again later."}
	}
	fail := func(p *problem.Problem) (*os.File, *problem.Problem) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, p
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(&problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable",
			Detail: "The server could not store the upload; try again later."})
	}
	n, err := io.Copy(f, io.LimitReader(src, limit+1))
	switch {
	case isTooLarge(err) || n > limit:
		return fail(tooLargeProblem(limit))
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) { // writing to the disk failed
			return fail(&problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable",
				Detail: "The server could not store the upload (disk full?); try again later."})
		}
		return fail(&problem.Problem{Status: http.StatusBadRequest, Code: problem.CodeValidation, Title: "Incomplete upload",
			Detail: "The upload did not complete; send the file again."})
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(&problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable",
			Detail: "The server could not read back the upload; try again later."})
	}
	return f, nil
}

// deadlineReader pushes the connection's read and write deadlines back
// while an upload flows, so that a large file is not cut by the server's
// request timeouts; a stalled upload still ends after uploadIdle.
type deadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	last time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.last = now
		// Not every connection supports deadlines (tests' recorders);
		// the server's own timeouts then apply.
		_ = d.rc.SetReadDeadline(now.Add(uploadIdle))
		_ = d.rc.SetWriteDeadline(now.Add(uploadIdle + importWait + time.Minute))
	}
	return d.r.Read(p)
}

// importOptions turns the option fields into ImportOptions.
func importOptions(f url.Values, partName string) (contacts.ImportOptions, *problem.Problem) {
	bad := func(field, msg string) (contacts.ImportOptions, *problem.Problem) {
		return contacts.ImportOptions{}, &problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: field + ": " + msg, Errors: []problem.FieldError{{Field: field, Message: msg}}}
	}
	for k, vs := range f {
		known := false
		for _, n := range importOptionNames {
			known = known || k == n
		}
		if !known {
			return bad(shortName(k), "unknown import option; the options are "+strings.Join(importOptionNames, ", "))
		}
		for _, v := range vs {
			if !cleanText(v) {
				return bad(k, "must be UTF-8 text without NUL characters")
			}
		}
		if len(vs) > 1 && k != "consent" && k != "list" {
			return bad(k, "give it once")
		}
	}
	o := contacts.ImportOptions{Mode: contacts.ImportMode(f.Get("mode")), DefaultCallingCode: f.Get("default_calling_code"),
		ConsentPurpose: f.Get("consent_purpose")}
	var ok bool
	if o.DryRun, ok = optionalBool(f.Get("dry_run")); !ok {
		return bad("dry_run", "must be true or false")
	}
	if o.IgnoreUnknownColumns, ok = optionalBool(f.Get("ignore_unknown_columns")); !ok {
		return bad("ignore_unknown_columns", "must be true or false")
	}
	for i, c := range f["consent"] {
		ic, err := parseImportConsent(c)
		if err != nil {
			return bad(fmt.Sprintf("consent[%d]", i), err.Error())
		}
		ic.Wording, ic.WordingVersion = f.Get("consent_wording"), f.Get("consent_wording_version")
		o.Consents = append(o.Consents, ic)
	}
	if len(o.Consents) == 0 && (f.Get("consent_wording") != "" || f.Get("consent_wording_version") != "") {
		return bad("consent_wording", "applies to the consents given in consent (e.g. email:granted); give one")
	}
	for _, l := range f["list"] {
		if !validID(l) {
			return bad("list", "is not a list id")
		}
		o.Lists = append(o.Lists, l)
	}
	if m := f.Get("mapping"); m != "" {
		if err := json.Unmarshal([]byte(m), &o.Mapping); err != nil {
			return bad("mapping", `must be a JSON object of header names to targets, e.g. {"E-mail":"email","Points":"attr.points","Notes":"-"}`)
		}
	}
	if j := f.Get("job_id"); j != "" {
		if !validID(j) {
			return bad("job_id", "is not an import job id")
		}
		o.JobID = j
	}
	name := f.Get("file_name")
	if name == "" {
		name = partName
	}
	o.FileName = cleanFileName(name)
	return o, nil
}

// parseImportConsent parses a consent of an import, "channel:status" or
// "channel:status:purpose" (email:granted, sms:withdrawn:alerts), the form
// `relais contacts import --consent` takes too.
func parseImportConsent(s string) (contacts.ImportConsent, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return contacts.ImportConsent{}, errors.New("must be channel:status or channel:status:purpose, e.g. email:granted")
	}
	c := contacts.ImportConsent{Channel: contacts.Channel(parts[0]), Status: contacts.ConsentStatus(parts[1])}
	if len(parts) == 3 {
		c.Purpose = parts[2]
	}
	switch c.Channel {
	case contacts.ChannelEmail, contacts.ChannelSMS:
	default:
		return contacts.ImportConsent{}, errors.New("the channel must be email or sms, e.g. email:granted")
	}
	switch c.Status {
	case contacts.ConsentGranted, contacts.ConsentWithdrawn, contacts.ConsentPending:
	default:
		return contacts.ImportConsent{}, errors.New("the status must be granted, withdrawn or pending, e.g. email:granted")
	}
	return c, nil
}

// cleanFileName keeps the base name of an uploaded file, printable and at
// most 255 bytes, for people reading the job.
func cleanFileName(name string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "." || name == "/" {
		return ""
	}
	var b strings.Builder
	for _, r := range name {
		if r == utf8.RuneError || unicode.IsControl(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > 255 {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Server) listImports(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	jobs, err := svc.ImportJobs(r.Context(), tenantID)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	views := make([]importJobView, len(jobs))
	for i, j := range jobs {
		views[i] = viewJob(j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": views})
}

// getImport is GET /api/v1/contacts/imports/{id}: the job's status, counts
// and progress.
func (s *Server) getImport(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID, id string) {
	if !validID(id) {
		notFound(w, r, "import job")
		return
	}
	job, err := svc.GetImportJob(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewJob(job))
}

// importErrors is the per-line error report of a job, by line: ?after=
// (the last line of the previous page) and ?limit= (100 by default, at
// most 1000). next_after is set when there may be more.
func (s *Server) importErrors(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	id := r.PathValue("id")
	q, ok := query(w, r, "after", "limit")
	if !ok {
		return
	}
	after, limit := int64(0), importErrorsPage
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			invalidInput(w, r, "after", "must be a line number (0 or more)")
			return
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			invalidInput(w, r, "limit", "must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	if !validID(id) {
		notFound(w, r, "import job")
		return
	}
	job, err := svc.GetImportJob(r.Context(), tenantID, id)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	errs, err := svc.ImportErrors(r.Context(), tenantID, job.ID, after, limit)
	if err != nil {
		s.contactsError(w, r, err)
		return
	}
	out := map[string]any{"job_id": job.ID, "failed": job.Failed, "errors": errs}
	if len(errs) == limit {
		out["next_after"] = errs[len(errs)-1].Line
	}
	writeJSON(w, http.StatusOK, out)
}

// --- export -------------------------------------------------------------

// exportContacts streams the selected contacts as CSV or JSON Lines:
// ?format=csv|jsonl, ?list=, ?segment=, ?filter=, ?status=,
// ?pseudonymise=true (email and phone replaced by keyed tokens, names and
// personal attributes left out: PRIV-2).
func (s *Server) exportContacts(w http.ResponseWriter, r *http.Request, svc *contacts.Service, tenantID string) {
	if r.Method != http.MethodGet { // HEAD would run (and record) a whole export for nothing
		w.Header().Set("Allow", http.MethodGet)
		problem.Write(w, r, problem.Problem{Status: http.StatusMethodNotAllowed, Code: problem.CodeMethodNotAllowed,
			Title: "Method not allowed", Detail: "An export is fetched with GET."})
		return
	}
	q, ok := query(w, r, "format", "list", "segment", "filter", "status", "pseudonymise")
	if !ok {
		return
	}
	o := contacts.ExportOptions{Format: contacts.ExportFormat(q.Get("format")), ListID: q.Get("list"), SegmentID: q.Get("segment"),
		Filter: q.Get("filter"), Status: contacts.Status(q.Get("status"))}
	if o.Pseudonymise, ok = optionalBool(q.Get("pseudonymise")); !ok {
		invalidInput(w, r, "pseudonymise", "must be true or false")
		return
	}
	if o.ListID != "" && !validID(o.ListID) {
		notFound(w, r, "list")
		return
	}
	if o.SegmentID != "" && !validID(o.SegmentID) {
		notFound(w, r, "segment")
		return
	}
	ctype, ext := "text/csv; charset=utf-8", "csv"
	if o.Format == contacts.FormatJSONL {
		ctype, ext = "application/x-ndjson", "jsonl"
	}
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), begin: func() {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Disposition", `attachment; filename="contacts.`+ext+`"`)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
	}}
	if _, err := svc.Export(r.Context(), tenantID, sw, o); err != nil {
		if !sw.started {
			s.contactsError(w, r, err)
			return
		}
		// Part of the file is out: break the connection so that the
		// client sees a failed download, not a short file.
		s.log.ErrorContext(r.Context(), "export failed midway", "request_id", problem.RequestID(r.Context()), "error", err)
		panic(http.ErrAbortHandler)
	}
	if !sw.started { // an empty JSON Lines export
		sw.begin()
		w.WriteHeader(http.StatusOK)
	}
}

// streamWriter sets the response headers at the first write, so that an
// error before any byte is out can still be a problem document, and pushes
// the write deadline back while data flows.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	begin   func()
	started bool
	last    time.Time
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		sw.begin()
		sw.w.WriteHeader(http.StatusOK)
	}
	if now := time.Now(); now.Sub(sw.last) > time.Second {
		sw.last = now
		_ = sw.rc.SetWriteDeadline(now.Add(uploadIdle)) // unsupported by tests' recorders
	}
	return sw.w.Write(p)
}

// --- public links -------------------------------------------------------

// linkPage is the tiny page behind an unsubscribe or confirmation link:
// no script, the stylesheet of the UI, a form that POSTs to the same URL
// (a GET never acts: mail scanners follow links).
var linkPage = template.Must(template.New("link").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · Relais</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<main>
<div class="card">
<h1>{{.Title}}</h1>
{{if .Failed}}<p class="error" role="alert">{{.Message}}</p>{{else if .Done}}<p class="notice" role="status">{{.Message}}</p>{{else}}<p>{{.Message}}</p>{{end}}
{{if .Button}}<form method="post"><input type="hidden" name="{{.Field}}" value="{{.Value}}"><button type="submit">{{.Button}}</button></form>{{end}}
</div>
</main>
</body>
</html>
`))

// linkView is what linkPage shows.
type linkView struct {
	Title, Message       string
	Button, Field, Value string
	Done, Failed         bool
}

func renderLink(w http.ResponseWriter, status int, v linkView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Robots-Tag", "noindex")
	w.WriteHeader(status)
	_ = linkPage.Execute(w, v) // the client may be gone
}

// badLink is the one answer to every link that does not work (malformed,
// forged, of an unknown tenant, expired, already used): it tells nothing
// more than that.
func badLink(w http.ResponseWriter, title string) {
	renderLink(w, http.StatusNotFound, linkView{Title: title, Failed: true,
		Message: "This link is not valid or no longer works. If you copied it, check that it is complete."})
}

// linkBroken answers a failure of the server behind a link.
func (s *Server) linkBroken(w http.ResponseWriter, r *http.Request, title string, err error) {
	s.log.ErrorContext(r.Context(), "link failed", "request_id", problem.RequestID(r.Context()), "error", err)
	renderLink(w, http.StatusInternalServerError, linkView{Title: title, Failed: true,
		Message: "Something went wrong on our side; please try again later."})
}

// linkContext marks the link as the actor of the audit events it causes;
// the request's IP and user agent (set by the middleware) stay, and the
// consent proof records the IP.
func linkContext(r *http.Request, id string) context.Context {
	m := audit.MetaFrom(r.Context())
	m.Actor = audit.Actor{Type: audit.ActorSystem, ID: id}
	return audit.WithMeta(r.Context(), m)
}

// linkToken returns the token of a link, or "" when it cannot be one.
func linkToken(r *http.Request) string {
	t := r.PathValue("token")
	if len(t) > 1024 || !cleanText(t) {
		return ""
	}
	return t
}

const (
	unsubscribeTitle = "Unsubscribe"
	confirmTitle     = "Confirm your subscription"
)

// unsubscribePage shows the form of an unsubscribe link; it changes
// nothing.
func (s *Server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	renderLink(w, http.StatusOK, linkView{Title: unsubscribeTitle,
		Message: "Do you want to stop receiving these messages?",
		Button:  "Unsubscribe", Field: "List-Unsubscribe", Value: "One-Click"})
}

// unsubscribeSubmit is the RFC 8058 one-click unsubscribe (the POST a mail
// provider sends with List-Unsubscribe=One-Click) and the page's form: it
// withdraws the consent at once, with the request's IP as proof, and
// answers 200 without a redirect. It is idempotent. The token is the only
// authority: no cookie or session is read.
func (s *Server) unsubscribeSubmit(w http.ResponseWriter, r *http.Request) {
	svc, tok := s.opts.Contacts, linkToken(r)
	if svc == nil || tok == "" {
		badLink(w, unsubscribeTitle)
		return
	}
	err := svc.Unsubscribe(linkContext(r, "unsubscribe-link"), tok)
	switch {
	case err == nil:
		renderLink(w, http.StatusOK, linkView{Title: unsubscribeTitle, Done: true,
			Message: "You are unsubscribed: you will not receive these messages any more."})
	case errors.Is(err, contacts.ErrInvalidToken):
		badLink(w, unsubscribeTitle)
	default:
		s.linkBroken(w, r, unsubscribeTitle, err)
	}
}

// confirmPage shows the form of a double opt-in link: following the link
// does not confirm (link scanners follow links), the person's click does.
func (s *Server) confirmPage(w http.ResponseWriter, r *http.Request) {
	renderLink(w, http.StatusOK, linkView{Title: confirmTitle,
		Message: "Please confirm that you want to receive these messages.",
		Button:  "Confirm", Field: "confirm", Value: "yes"})
}

// confirmSubmit confirms a pending consent (double opt-in), with the
// request's IP as proof.
func (s *Server) confirmSubmit(w http.ResponseWriter, r *http.Request) {
	svc, tok := s.opts.Contacts, linkToken(r)
	if svc == nil || tok == "" {
		badLink(w, confirmTitle)
		return
	}
	_, err := svc.Confirm(linkContext(r, "confirm-link"), tok)
	switch {
	case err == nil:
		renderLink(w, http.StatusOK, linkView{Title: confirmTitle, Done: true, Message: "Thank you: your subscription is confirmed."})
	case errors.Is(err, contacts.ErrInvalidToken), errors.Is(err, contacts.ErrTokenExpired):
		badLink(w, confirmTitle)
	default:
		s.linkBroken(w, r, confirmTitle, err)
	}
}
