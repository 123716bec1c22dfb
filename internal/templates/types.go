package templates

import (
	"errors"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/router"
)

// Channel is what a template is sent through.
type Channel string

// Channels.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
)

// Limits on what a template may hold. They bound hostile or careless input
// at save time; MaxRenderBytes bounds each render.
const (
	MaxNameLen     = 128       // characters of a template name
	MaxVariants    = 32        // locales of one template
	MaxSubjectSrc  = 2 << 10   // bytes of a subject template
	MaxBodySrc     = 256 << 10 // bytes of an HTML or text part template
	MaxSMSSrc      = 4 << 10   // bytes of an SMS template
	MaxRenderBytes = 1 << 20   // bytes of all the rendered parts of one message
	maxSubjectOut  = 998       // bytes of a rendered subject (RFC 5322 line)
	maxAddrLen     = 320       // bytes of a From or Reply-To address
	maxLocaleLen   = 35        // bytes of a locale tag
	maxIDLen       = 64        // bytes of a template id
)

// Errors. Test them with errors.Is.
var (
	// ErrNotFound: no such template or version in this tenant.
	ErrNotFound = errors.New("template not found")
	// ErrConflict: the name is taken by another active template, or the
	// template changed since the version an update was based on.
	ErrConflict = errors.New("template conflict")
	// ErrArchived: the template was deleted (archived); it can still be
	// read and its pinned versions rendered, but not changed or rendered
	// as "latest".
	ErrArchived = errors.New("template archived")
	// ErrRender: a render failed (a data field missing, output too large,
	// deadline passed, a helper given a bad value).
	ErrRender = errors.New("template render failed")
)

// ValidationError is bad input, found before anything is written. Field
// names the part ("name", "default_locale", "variants.fr.html"...); Line and
// Column (1-based, in characters) locate the problem inside a template part
// when known (zero otherwise).
type ValidationError struct {
	Field   string
	Line    int
	Column  int
	Message string
}

// Error reads "field:line:column: message" (the position when known).
func (e *ValidationError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.Field, e.Line, e.Column, e.Message)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.Field, e.Line, e.Message)
	default:
		return e.Field + ": " + e.Message
	}
}

// FieldSet is what a template may refer to, given by the caller at save
// time: Attributes are the keys of the tenant's attribute schema (package
// contacts owns it), Data allows data.* (transactional templates, whose
// sender supplies the data with each message).
type FieldSet struct {
	Attributes []string
	Data       bool
}

// Variant is a template's content in one locale. Email: Subject, and HTML or
// Text or both (without Text, the text part is derived from the rendered
// HTML); From and ReplyTo are optional fixed addresses, not templates. SMS:
// Text only.
type Variant struct {
	Subject string `json:"subject,omitempty"`
	HTML    string `json:"html,omitempty"`
	Text    string `json:"text,omitempty"`
	From    string `json:"from,omitempty"`
	ReplyTo string `json:"reply_to,omitempty"`
}

// Input is what Create and Update take.
type Input struct {
	// Name is unique among the tenant's active templates. On Update, empty
	// keeps the current name.
	Name string `json:"name"`
	// Channel is fixed at creation. On Update it may be empty or must be
	// the template's channel.
	Channel Channel `json:"channel"`
	// DefaultLocale is the variant used when no other fits; it must be a
	// key of Variants. It may be empty when there is exactly one variant.
	DefaultLocale string `json:"default_locale"`
	// Variants maps a locale ("en", "fr", "en-GB") to its content. Locale
	// tags are stored in canonical case ("en-gb" becomes "en-GB").
	Variants map[string]Variant `json:"variants"`
	// BaseVersion, on Update, when not zero, is the version the change was
	// made from: the update is refused with ErrConflict if another version
	// was saved since (no lost updates between two editors).
	BaseVersion int `json:"base_version,omitempty"`
}

// Template is one version of a template, with the template's own fields.
type Template struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Channel Channel `json:"channel"`
	// Version is the version shown; LatestVersion the template's newest.
	Version       int                `json:"version"`
	LatestVersion int                `json:"latest_version"`
	Transactional bool               `json:"transactional"`
	DefaultLocale string             `json:"default_locale"`
	Variants      map[string]Variant `json:"variants"`
	// CreatedAt/CreatedBy: the template's creation. UpdatedAt/UpdatedBy:
	// when and by whom this version was saved. Actors read "type:id"
	// (audit.Actor), e.g. "user:0190...".
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	UpdatedAt  time.Time  `json:"updated_at"`
	UpdatedBy  string     `json:"updated_by"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
}

// Summary is a template in a list, without its content.
type Summary struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	Channel       Channel    `json:"channel"`
	Version       int        `json:"version"`
	Transactional bool       `json:"transactional"`
	DefaultLocale string     `json:"default_locale"`
	Locales       []string   `json:"locales"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	UpdatedBy     string     `json:"updated_by"`
	ArchivedAt    *time.Time `json:"archived_at,omitempty"`
}

// VersionInfo is one entry of a template's history.
type VersionInfo struct {
	Version       int       `json:"version"`
	DefaultLocale string    `json:"default_locale"`
	Locales       []string  `json:"locales"`
	Transactional bool      `json:"transactional"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by"`
}

// ListOptions filter List.
type ListOptions struct {
	// Channel, when set, keeps only that channel's templates.
	Channel Channel
	// Archived includes archived templates.
	Archived bool
}

// SMSInfo is the encoding and length of an SMS text (see SMSSegments).
type SMSInfo struct {
	Encoding string `json:"encoding"`
	Chars    int    `json:"chars"`
	Segments int    `json:"segments"`
}

// Preview is a rendered template for display.
type Preview struct {
	TemplateID string `json:"template_id"`
	Version    int    `json:"version"`
	// Locale is the variant used (after fallback).
	Locale  string         `json:"locale"`
	Content router.Content `json:"content"`
	// SMS is set for SMS templates.
	SMS *SMSInfo `json:"sms,omitempty"`
}
