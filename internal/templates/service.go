package templates

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// DefaultCacheSize is the number of parsed template versions a Service
// keeps when CacheSize is zero.
const DefaultCacheSize = 1024

// Service keeps templates and renders them. The zero value with DB set is
// ready to use; do not copy a Service after first use.
type Service struct {
	DB *store.DB
	// CacheSize bounds the parsed versions kept for Render
	// (DefaultCacheSize when zero).
	CacheSize int

	once  sync.Once
	cache *cache
}

func (s *Service) parsed() *cache {
	s.once.Do(func() {
		n := s.CacheSize
		if n <= 0 {
			n = DefaultCacheSize
		}
		s.cache = &cache{max: n, m: make(map[cacheKey]*compiled)}
	})
	return s.cache
}

// actor is who saves, as stored in created_by/updated_by: the audit actor
// of the context ("type:id"), or the system.
func actor(ctx context.Context) string {
	a := audit.MetaFrom(ctx).Actor
	if a.Type == "" {
		return audit.ActorSystem + ":relais"
	}
	return a.Type + ":" + a.ID
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: %q", ErrNotFound, truncateBytes(id, maxIDLen))
	}
	return nil
}

// Create validates in against fs and saves it as version 1 of a new
// template, with its audit event. fs.Data makes it a transactional template
// (data.* allowed). A name taken by another active template is ErrConflict.
func (s *Service) Create(ctx context.Context, tenantID string, in Input, fs FieldSet) (Template, error) {
	d, comp, err := prepare(in, in.Channel, fs)
	if err != nil {
		return Template{}, err
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return Template{}, fmt.Errorf("templates: new id: %w", err)
	}
	id := uid.String()
	by := actor(ctx)
	var t Template
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := tx.Now().UTC().Truncate(time.Microsecond)
		_, err := tx.Exec(ctx, `INSERT INTO templates (tenant_id, id, name, channel, version, created_at, created_by, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, 1, $5, $6, $5, $6)`, id, d.name, string(d.channel), store.Micros(now), by)
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a template named %q exists", ErrConflict, d.name)
		}
		if err != nil {
			return fmt.Errorf("templates: insert template: %w", err)
		}
		if err := insertVersion(ctx, tx, id, 1, d, now, by); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{
			Category: audit.CategoryChange, Action: "template.create", ObjectType: "template", ObjectID: id,
			Changes: []audit.Change{{Field: "name", After: d.name}, {Field: "channel", After: string(d.channel)},
				{Field: "version", After: 1}, {Field: "default_locale", After: d.defaultLocale}, {Field: "locales", After: d.locales},
				{Field: "transactional", After: d.transactional}},
		})
		if err != nil {
			return fmt.Errorf("templates: audit: %w", err)
		}
		t = Template{ID: id, Name: d.name, Channel: d.channel, Version: 1, LatestVersion: 1, Transactional: d.transactional,
			DefaultLocale: d.defaultLocale, Variants: d.variants, CreatedAt: now, CreatedBy: by, UpdatedAt: now, UpdatedBy: by}
		tx.AfterCommit(func() { s.parsed().put(cacheKey{tenantID, id, 1}, comp) })
		return nil
	})
	if err != nil {
		return Template{}, err
	}
	return t, nil
}

func insertVersion(ctx context.Context, tx *store.Tx, id string, version int, d draft, now time.Time, by string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO template_versions (tenant_id, template_id, version, default_locale, transactional, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, version, d.defaultLocale, d.transactional, store.Micros(now), by); err != nil {
		return fmt.Errorf("templates: insert version: %w", err)
	}
	for _, loc := range d.locales {
		v := d.variants[loc]
		if _, err := tx.Exec(ctx, `INSERT INTO template_variants (tenant_id, template_id, version, locale, subject, html_body, text_body, from_addr, reply_to)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, version, loc, v.Subject, v.HTML, v.Text, v.From, v.ReplyTo); err != nil {
			return fmt.Errorf("templates: insert variant %s: %w", loc, err)
		}
	}
	return nil
}

// Update validates in against fs and saves it as a new version of the
// template; older versions are kept unchanged. in.Name empty keeps the name;
// in.Channel must be empty or the template's; fs.Data sets whether the new
// version is transactional. With in.BaseVersion set, a template saved since
// that version is ErrConflict. An archived template is ErrArchived.
func (s *Service) Update(ctx context.Context, tenantID, id string, in Input, fs FieldSet) (Template, error) {
	if err := checkID(id); err != nil {
		return Template{}, err
	}
	// Parse and check outside the write transaction (SQLite has one
	// writer): the channel never changes, so reading it first is safe.
	head, err := s.Get(ctx, tenantID, id, 0)
	if err != nil {
		return Template{}, err
	}
	if head.ArchivedAt != nil {
		return Template{}, fmt.Errorf("%w: template %s", ErrArchived, id)
	}
	if in.Channel != "" && in.Channel != head.Channel {
		return Template{}, &ValidationError{Field: "channel", Message: fmt.Sprintf("is %s: a template's channel cannot change", head.Channel)}
	}
	keepName := in.Name == ""
	if keepName {
		in.Name = head.Name
	}
	d, comp, err := prepare(in, head.Channel, fs)
	if err != nil {
		return Template{}, err
	}
	by := actor(ctx)
	var t Template
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		cur, err := loadHead(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.ArchivedAt != nil {
			return fmt.Errorf("%w: template %s", ErrArchived, id)
		}
		if keepName {
			d.name = cur.Name
		}
		if in.BaseVersion != 0 && in.BaseVersion != cur.LatestVersion {
			return fmt.Errorf("%w: version %d was saved since version %d", ErrConflict, cur.LatestVersion, in.BaseVersion)
		}
		now := tx.Now().UTC().Truncate(time.Microsecond)
		// The conditional update takes the row's lock: concurrent updates
		// of one template serialise and get consecutive versions.
		var version int
		err = tx.QueryRow(ctx, `UPDATE templates SET version = version + 1, name = $3, updated_at = $4, updated_by = $5
			WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL RETURNING version`, id, d.name, store.Micros(now), by).Scan(&version)
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a template named %q exists", ErrConflict, d.name)
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: template %s", ErrArchived, id)
		}
		if err != nil {
			return fmt.Errorf("templates: update template: %w", err)
		}
		if in.BaseVersion != 0 && version != in.BaseVersion+1 {
			return fmt.Errorf("%w: another version was saved since version %d", ErrConflict, in.BaseVersion)
		}
		if err := insertVersion(ctx, tx, id, version, d, now, by); err != nil {
			return err
		}
		changes := []audit.Change{{Field: "version", Before: version - 1, After: version}}
		if d.name != cur.Name {
			changes = append(changes, audit.Change{Field: "name", Before: cur.Name, After: d.name})
		}
		changes = append(changes, contentChanges(cur, d)...)
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "template.update",
			ObjectType: "template", ObjectID: id, Changes: changes}); err != nil {
			return fmt.Errorf("templates: audit: %w", err)
		}
		t = Template{ID: id, Name: d.name, Channel: cur.Channel, Version: version, LatestVersion: version, Transactional: d.transactional,
			DefaultLocale: d.defaultLocale, Variants: d.variants, CreatedAt: cur.CreatedAt, CreatedBy: cur.CreatedBy, UpdatedAt: now, UpdatedBy: by}
		tx.AfterCommit(func() { s.parsed().put(cacheKey{tenantID, id, version}, comp) })
		return nil
	})
	if err != nil {
		return Template{}, err
	}
	return t, nil
}

// contentChanges names the parts that differ between the current version
// and the new one (names only: the trail does not copy template bodies).
func contentChanges(cur Template, d draft) []audit.Change {
	var out []audit.Change
	if cur.DefaultLocale != d.defaultLocale {
		out = append(out, audit.Change{Field: "default_locale", Before: cur.DefaultLocale, After: d.defaultLocale})
	}
	if cur.Transactional != d.transactional {
		out = append(out, audit.Change{Field: "transactional", Before: cur.Transactional, After: d.transactional})
	}
	seen := map[string]bool{}
	for _, loc := range d.locales {
		seen[loc] = true
		old, had := cur.Variants[loc]
		v := d.variants[loc]
		if !had {
			out = append(out, audit.Change{Field: "variants." + loc, After: "added"})
			continue
		}
		for _, p := range []struct {
			name     string
			old, new string
		}{{"subject", old.Subject, v.Subject}, {"html", old.HTML, v.HTML}, {"text", old.Text, v.Text}, {"from", old.From, v.From}, {"reply_to", old.ReplyTo, v.ReplyTo}} {
			if p.old != p.new {
				out = append(out, audit.Change{Field: "variants." + loc + "." + p.name})
			}
		}
	}
	var removed []string
	for loc := range cur.Variants {
		if !seen[loc] {
			removed = append(removed, loc)
		}
	}
	sort.Strings(removed)
	for _, loc := range removed {
		out = append(out, audit.Change{Field: "variants." + loc, Before: "removed"})
	}
	return out
}

// Get returns one version of a template (version 0: the latest), archived
// or not.
func (s *Service) Get(ctx context.Context, tenantID, id string, version int) (Template, error) {
	if err := checkID(id); err != nil {
		return Template{}, err
	}
	var t Template
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		t, err = load(ctx, tx, id, version)
		return err
	})
	return t, err
}

// loadHead reads a template and its latest version.
func loadHead(ctx context.Context, tx *store.Tx, id string) (Template, error) {
	return load(ctx, tx, id, 0)
}

func load(ctx context.Context, tx *store.Tx, id string, version int) (Template, error) {
	var t Template
	var channel string
	var created, updated int64
	var archived *int64
	err := tx.QueryRow(ctx, `SELECT name, channel, version, created_at, created_by, archived_at
		FROM templates WHERE tenant_id = $1 AND id = $2`, id).Scan(&t.Name, &channel, &t.LatestVersion, &created, &t.CreatedBy, &archived)
	if errors.Is(err, store.ErrNotFound) {
		return Template{}, fmt.Errorf("%w: template %s", ErrNotFound, id)
	}
	if err != nil {
		return Template{}, fmt.Errorf("templates: read template: %w", err)
	}
	t.ID, t.Channel, t.CreatedAt = id, Channel(channel), store.FromMicros(created)
	if archived != nil {
		at := store.FromMicros(*archived)
		t.ArchivedAt = &at
	}
	t.Version = version
	if version == 0 {
		t.Version = t.LatestVersion
	}
	err = tx.QueryRow(ctx, `SELECT default_locale, transactional, created_at, created_by FROM template_versions
		WHERE tenant_id = $1 AND template_id = $2 AND version = $3`, id, t.Version).Scan(&t.DefaultLocale, &t.Transactional, &updated, &t.UpdatedBy)
	if errors.Is(err, store.ErrNotFound) {
		return Template{}, fmt.Errorf("%w: template %s has no version %d", ErrNotFound, id, t.Version)
	}
	if err != nil {
		return Template{}, fmt.Errorf("templates: read version: %w", err)
	}
	t.UpdatedAt = store.FromMicros(updated)
	rows, err := tx.Query(ctx, `SELECT locale, subject, html_body, text_body, from_addr, reply_to FROM template_variants
		WHERE tenant_id = $1 AND template_id = $2 AND version = $3`, id, t.Version)
	if err != nil {
		return Template{}, fmt.Errorf("templates: read variants: %w", err)
	}
	defer func() { _ = rows.Close() }()
	t.Variants = map[string]Variant{}
	for rows.Next() {
		var loc string
		var v Variant
		if err := rows.Scan(&loc, &v.Subject, &v.HTML, &v.Text, &v.From, &v.ReplyTo); err != nil {
			return Template{}, fmt.Errorf("templates: read variants: %w", err)
		}
		t.Variants[loc] = v
	}
	if err := rows.Err(); err != nil {
		return Template{}, fmt.Errorf("templates: read variants: %w", err)
	}
	return t, nil
}

// Versions returns a template's history, newest first.
func (s *Service) Versions(ctx context.Context, tenantID, id string) ([]VersionInfo, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var out []VersionInfo
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT v.version, v.default_locale, v.transactional, v.created_at, v.created_by, l.locale
			FROM template_versions v JOIN template_variants l
			  ON l.tenant_id = v.tenant_id AND l.template_id = v.template_id AND l.version = v.version
			WHERE v.tenant_id = $1 AND v.template_id = $2 ORDER BY v.version DESC, l.locale`, id)
		if err != nil {
			return fmt.Errorf("templates: read versions: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var vi VersionInfo
			var at int64
			var loc string
			if err := rows.Scan(&vi.Version, &vi.DefaultLocale, &vi.Transactional, &at, &vi.CreatedBy, &loc); err != nil {
				return fmt.Errorf("templates: read versions: %w", err)
			}
			if n := len(out); n > 0 && out[n-1].Version == vi.Version {
				out[n-1].Locales = append(out[n-1].Locales, loc)
				continue
			}
			vi.CreatedAt, vi.Locales = store.FromMicros(at), []string{loc}
			out = append(out, vi)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("templates: read versions: %w", err)
		}
		if len(out) == 0 {
			return fmt.Errorf("%w: template %s", ErrNotFound, id)
		}
		return nil
	})
	return out, err
}

// List returns the tenant's templates by name, without their content:
// active ones, and archived ones too with opts.Archived.
func (s *Service) List(ctx context.Context, tenantID string, opts ListOptions) ([]Summary, error) {
	if opts.Channel != "" && opts.Channel != ChannelEmail && opts.Channel != ChannelSMS {
		return nil, &ValidationError{Field: "channel", Message: "must be email or sms"}
	}
	out := []Summary{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT t.id, t.name, t.channel, t.version, t.created_at, t.updated_at, t.updated_by, t.archived_at,
				v.default_locale, v.transactional, l.locale
			FROM templates t
			JOIN template_versions v ON v.tenant_id = t.tenant_id AND v.template_id = t.id AND v.version = t.version
			JOIN template_variants l ON l.tenant_id = t.tenant_id AND l.template_id = t.id AND l.version = t.version
			WHERE t.tenant_id = $1 AND ($2 = '' OR t.channel = $2) AND ($3 OR t.archived_at IS NULL)
			ORDER BY t.name, t.id, l.locale`, string(opts.Channel), opts.Archived)
		if err != nil {
			return fmt.Errorf("templates: list: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var sm Summary
			var channel, loc string
			var created, updated int64
			var archived *int64
			if err := rows.Scan(&sm.ID, &sm.Name, &channel, &sm.Version, &created, &updated, &sm.UpdatedBy, &archived,
				&sm.DefaultLocale, &sm.Transactional, &loc); err != nil {
				return fmt.Errorf("templates: list: %w", err)
			}
			if n := len(out); n > 0 && out[n-1].ID == sm.ID {
				out[n-1].Locales = append(out[n-1].Locales, loc)
				continue
			}
			sm.Channel, sm.Locales = Channel(channel), []string{loc}
			sm.CreatedAt, sm.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
			if archived != nil {
				at := store.FromMicros(*archived)
				sm.ArchivedAt = &at
			}
			out = append(out, sm)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete archives a template: it leaves lists and can no longer be
// updated or rendered as "latest", its name becomes free, and its versions
// stay readable and renderable by number (messages and campaigns pinned
// to them still render). Archiving twice is ErrArchived.
func (s *Service) Delete(ctx context.Context, tenantID, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := tx.Now().UTC().Truncate(time.Microsecond)
		res, err := tx.Exec(ctx, `UPDATE templates SET archived_at = $3, updated_at = $3, updated_by = $4
			WHERE tenant_id = $1 AND id = $2 AND archived_at IS NULL`, id, store.Micros(now), actor(ctx))
		if err != nil {
			return fmt.Errorf("templates: archive: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("templates: archive: %w", err)
		} else if n == 0 {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM templates WHERE tenant_id = $1 AND id = $2`, id).Scan(&one)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: template %s", ErrNotFound, id)
			}
			if err != nil {
				return fmt.Errorf("templates: archive: %w", err)
			}
			return fmt.Errorf("%w: template %s", ErrArchived, id)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "template.archive",
			ObjectType: "template", ObjectID: id, Changes: []audit.Change{{Field: "archived", Before: false, After: true}}})
		if err != nil {
			return fmt.Errorf("templates: audit: %w", err)
		}
		return nil
	})
}

// Render renders one version of a template (version 0: the latest, which
// costs a query, and is ErrArchived once the template is archived) in the
// variant that fits locale best: the exact locale, then its language
// ("fr" for "fr-CA"), then the default. data is the merge data:
//
//	{"contact":    {"email": ..., "first_name": ..., ...},
//	 "attributes": {"country": ..., ...},
//	 "data":       {...}, // transactional templates only
//	 "links":      {"unsubscribe": ..., "preferences": ...}}
//
// each namespace a map[string]any (contact, attributes and links may also
// be map[string]string); Vars.Map builds it. An email gets the version's
// From and Reply-To, the rendered subject (one line), HTML and text (derived
// from the HTML when the variant has none), and List-Unsubscribe headers
// (RFC 8058 one-click) when links.unsubscribe is an http(s) URL. Errors
// wrap ErrRender, ErrNotFound or ErrArchived.
func (s *Service) Render(ctx context.Context, tenantID, templateID string, version int, locale string, data map[string]any) (router.Content, error) {
	c, _, err := s.compiled(ctx, tenantID, templateID, version)
	if err != nil {
		return router.Content{}, err
	}
	return c.render(ctx, c.variant(locale), data)
}

// compiled returns a parsed version from the cache, or loads, parses and
// caches it; version 0 is the latest (ErrArchived for an archived
// template). The cache is keyed by tenant: one tenant's render never uses
// another's entry, and a miss reads through the tenant's own transaction.
func (s *Service) compiled(ctx context.Context, tenantID, id string, version int) (*compiled, int, error) {
	if version < 0 {
		return nil, 0, fmt.Errorf("%w: version %d", ErrNotFound, version)
	}
	if err := checkID(id); err != nil {
		return nil, 0, err
	}
	if tenantID == "" {
		return nil, 0, store.ErrNoTenant
	}
	if version == 0 {
		latest, err := s.latest(ctx, tenantID, id, true)
		if err != nil {
			return nil, 0, err
		}
		version = latest
	}
	key := cacheKey{tenantID, id, version}
	if c := s.parsed().get(key); c != nil {
		return c, version, nil
	}
	var t Template
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		t, err = load(ctx, tx, id, version)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	c, err := compileStored(t)
	if err != nil {
		return nil, 0, err
	}
	s.parsed().put(key, c)
	return c, version, nil
}

// latest returns a template's latest version number.
func (s *Service) latest(ctx context.Context, tenantID, id string, refuseArchived bool) (int, error) {
	var latest int
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var archived *int64
		err := tx.QueryRow(ctx, `SELECT version, archived_at FROM templates WHERE tenant_id = $1 AND id = $2`, id).Scan(&latest, &archived)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: template %s", ErrNotFound, id)
		case err != nil:
			return fmt.Errorf("templates: read template: %w", err)
		case archived != nil && refuseArchived:
			return fmt.Errorf("%w: template %s", ErrArchived, id)
		}
		return nil
	})
	return latest, err
}

// compileStored parses a stored version. It was validated when saved; the
// attribute schema may have changed since, so attributes are not checked
// again (a removed one renders empty).
func compileStored(t Template) (*compiled, error) {
	r := rules{data: t.Transactional}
	c := &compiled{channel: t.Channel, transactional: t.Transactional, defaultLocale: t.DefaultLocale, variants: map[string]*variantTmpl{}}
	for loc, v := range t.Variants {
		vt, err := compileVariant(t.Channel, loc, v, r)
		if err != nil {
			return nil, fmt.Errorf("templates: stored template %s version %d no longer parses: %w", t.ID, t.Version, err)
		}
		c.variants[loc] = vt
	}
	if c.variants[c.defaultLocale] == nil {
		return nil, fmt.Errorf("templates: stored template %s version %d has no default variant", t.ID, t.Version)
	}
	c.index()
	return c, nil
}

// Preview renders the latest version of a template (archived or not) with
// sample data, in the variant that fits locale, for display. Fields the
// template names that sample lacks show as placeholders ("[contact.first_name]",
// "[data.order_id]"; a list it ranges over is empty). SMS previews carry
// the encoding and segment count.
func (s *Service) Preview(ctx context.Context, tenantID, templateID, locale string, sample map[string]any) (Preview, error) {
	if err := checkID(templateID); err != nil {
		return Preview{}, err
	}
	latest, err := s.latest(ctx, tenantID, templateID, false)
	if err != nil {
		return Preview{}, err
	}
	c, version, err := s.compiled(ctx, tenantID, templateID, latest)
	if err != nil {
		return Preview{}, err
	}
	v := c.variant(locale)
	content, err := c.render(ctx, v, placeholders(v, c.transactional, sample))
	if err != nil {
		return Preview{}, err
	}
	p := Preview{TemplateID: templateID, Version: version, Locale: v.locale, Content: content}
	if c.channel == ChannelSMS {
		enc, n, segs := SMSSegments(content.Text)
		p.SMS = &SMSInfo{Encoding: enc, Chars: n, Segments: segs}
	}
	return p, nil
}

// placeholders returns sample completed with a placeholder for each field
// the variant names that sample lacks. sample is not modified.
func placeholders(v *variantTmpl, transactional bool, sample map[string]any) map[string]any {
	out := map[string]any{}
	fill := func(ns string, keys []string) {
		m := map[string]any{}
		switch src := sample[ns].(type) {
		case map[string]any:
			for k, x := range src {
				m[k] = x
			}
		case map[string]string:
			for k, x := range src {
				m[k] = x
			}
		}
		for _, k := range keys {
			if x, ok := m[k]; !ok || x == nil || x == "" {
				m[k] = "[" + ns + "." + k + "]"
			}
		}
		out[ns] = m
	}
	ck, lk := contactKeys(), linkKeys()
	fill("contact", ck[:])
	fill("attributes", v.attrs)
	fill("links", lk[:])
	if transactional {
		d := deepCopy(sample["data"])
		dm, ok := d.(map[string]any)
		if !ok {
			dm = map[string]any{}
		}
		keys := make([]string, 0, len(v.refs.data))
		for k := range v.refs.data {
			keys = append(keys, k)
		}
		sort.Strings(keys) // parents before children
		for _, k := range keys {
			ref := v.refs.data[k]
			placeData(dm, ref.path, ref.ranged, "[data."+strings.Join(ref.path, ".")+"]")
		}
		out["data"] = dm
	}
	return out
}

// placeData sets a placeholder at path in m unless something is there.
func placeData(m map[string]any, path []string, ranged bool, text string) {
	for i, p := range path {
		last := i == len(path)-1
		x, ok := m[p]
		if last {
			if !ok {
				if ranged {
					m[p] = []any{}
				} else {
					m[p] = text
				}
			}
			return
		}
		next, isMap := x.(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		} else if !isMap {
			if s, isText := x.(string); isText && strings.HasPrefix(s, "[data.") {
				next = map[string]any{} // a placeholder of a parent: make it a map
				m[p] = next
			} else {
				return // sample data of another shape: leave it
			}
		}
		m = next
	}
}

func deepCopy(x any) any {
	switch v := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return x
	}
}

// cacheKey names one parsed version of one tenant's template.
type cacheKey struct {
	tenant, id string
	version    int
}

// cache holds parsed versions. Versions are immutable, so entries never go
// stale; when full, an arbitrary eighth is dropped.
type cache struct {
	mu  sync.RWMutex
	m   map[cacheKey]*compiled
	max int
}

func (c *cache) get(k cacheKey) *compiled {
	c.mu.RLock()
	v := c.m[k]
	c.mu.RUnlock()
	return v
}

func (c *cache) put(k cacheKey, v *compiled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		drop := max(1, c.max/8)
		for old := range c.m {
			delete(c.m, old)
			if drop--; drop == 0 {
				break
			}
		}
	}
	c.m[k] = v
}
