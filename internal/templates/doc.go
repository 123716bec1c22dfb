// Package templates keeps a tenant's message templates (email and SMS, per
// locale, versioned) and renders them into the content the router sends
// (CORE-4). It is a domain service: no HTTP, no CLI.
//
// # Which functions to use
//
// Everything hangs off a [Service]:
//
//	svc := &templates.Service{DB: db}
//
// Authoring: [Service.Create], [Service.Update] (every save is a new version;
// older versions never change), [Service.Get] (latest or one version),
// [Service.Versions], [Service.List], [Service.Delete] (a soft delete: the
// template is archived, its history kept). Each of them is audited in the
// transaction of the change. [Service.Preview] renders the latest version
// with sample data and, for SMS, the encoding and segment count
// ([SMSSegments]).
//
// Sending: [Service.Render] turns (template id, version, locale, merge data)
// into a router.Content. Parsed templates are cached per (tenant, id,
// version); versions are immutable, so the cache never goes stale. Pass the
// version the message or campaign pinned; version 0 means the latest and
// costs a query.
//
// # Merge fields
//
// Templates use Go template syntax over this data:
//
//	{{.contact.first_name}}  contact.{email,phone,first_name,last_name,locale,timezone}
//	{{.attributes.country}}  attributes.<key of the tenant's attribute schema>
//	{{.data.order_id}}       data.* (transactional templates only)
//	{{.links.unsubscribe}}   links.{unsubscribe,preferences}
//
// and these helpers besides the comparison and formatting built-ins:
// default, upper, lower, trim, truncate and date (see [Funcs]). The caller
// passes the fields a template may use as a [FieldSet]: the tenant's attribute
// keys (package contacts owns the schema) and whether data.* is allowed. A
// template is checked when it is saved: every field it names must be in the
// set, and an unknown field, an unknown function, a syntax error or a
// forbidden action is a [*ValidationError] naming the part, the line and the
// column. Forbidden: template, define and block (a template includes nothing
// else), call, ranging over a number literal, and using the whole merge data
// or a whole namespace as a value (which would print fields that were not
// validated).
//
// # Rendering safely
//
// HTML parts are executed by html/template, which escapes every merge value
// for its context (a contact named <script> comes out as &lt;script&gt;, a
// javascript: URL in an href becomes #ZgotmplZ); no helper returns trusted
// HTML. Subjects, text parts and SMS are executed by text/template (plain
// text, no escaping); a rendered subject has its line breaks and other
// control characters replaced by spaces, so merge data cannot add a mail
// header. From and Reply-To are fixed addresses, not templates. An email
// without a text part gets one derived from its rendered HTML.
//
// Every part runs with missingkey=error. Contact fields, link fields and the
// attributes a template names are always present (empty when the contact has
// none); a data.* field the caller did not supply is an error. Output is
// bounded ([MaxRenderBytes] for all the parts of one message, an error beyond)
// and the context is checked before each part and at each write: text/template
// cannot be interrupted, so a render that writes nothing runs to its end, but
// its loops can range only over data the caller supplied.
//
// # Errors
//
// Bad input yields a [*ValidationError] and writes nothing. Other errors can
// be tested with errors.Is: [ErrNotFound], [ErrConflict], [ErrArchived],
// [ErrRender] (a render failed: missing data field, output too large,
// deadline passed; the message names the part and the field, never a value).
package templates
