package contacts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/brianvoe/gofakeit/v7"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// SeedResult says what Seed wrote.
type SeedResult struct {
	Created int64  `json:"created"`
	Updated int64  `json:"updated"`
	Lists   []List `json:"lists"`
}

// seedCountry is a country the synthetic contacts come from.
type seedCountry struct {
	code, callingCode, locale, tz string
	mobile                        func(f *gofakeit.Faker) string // national significant number of a mobile
}

func digits(f *gofakeit.Faker, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte("0123456789"[f.Number(0, 9)])
	}
	return b.String()
}

var seedCountries = []seedCountry{
	{"FR", "33", "fr-FR", "Europe/Paris", func(f *gofakeit.Faker) string { return strconv.Itoa(f.Number(6, 7)) + digits(f, 8) }},
	{"BE", "32", "fr-BE", "Europe/Brussels", func(f *gofakeit.Faker) string { return "4" + strconv.Itoa(f.Number(7, 9)) + digits(f, 7) }},
	{"DE", "49", "de-DE", "Europe/Berlin", func(f *gofakeit.Faker) string { return "1" + strconv.Itoa(f.Number(5, 7)) + digits(f, 8) }},
	{"ES", "34", "es-ES", "Europe/Madrid", func(f *gofakeit.Faker) string { return "6" + digits(f, 8) }},
	{"IT", "39", "it-IT", "Europe/Rome", func(f *gofakeit.Faker) string { return "3" + digits(f, 9) }},
	{"GB", "44", "en-GB", "Europe/London", func(f *gofakeit.Faker) string { return "7" + digits(f, 9) }},
	{"US", "1", "en-US", "America/New_York", func(f *gofakeit.Faker) string {
		return strconv.Itoa(f.Number(201, 989)) + strconv.Itoa(f.Number(2, 9)) + digits(f, 6)
	}},
}

// Synthetic addresses use domains reserved for examples (RFC 2606), so a
// seeded tenant can never mail a real person.
var seedDomains = []string{"example.com", "example.org", "example.net", "mail.example.com", "post.example.org", "shop.example.net"}

// seedAttributes are declared by Seed if missing.
var seedAttributes = []AttributeDef{
	{Key: "country", Type: AttrString, Description: "Country (ISO 3166-1 alpha-2)"},
	{Key: "loyalty_points", Type: AttrNumber, Description: "Loyalty points"},
	{Key: "vip", Type: AttrBool, Description: "VIP customer"},
	{Key: "birth_date", Type: AttrDate, Personal: true, Description: "Birth date"},
}

var seedListNames = []string{"Newsletter", "VIP", "Prospects"}

const seedWording = "I agree to receive news and offers by email and SMS. I can unsubscribe at any time."

func asciiLower(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

// Seed creates n realistic synthetic contacts (TEST-1) in a tenant: names,
// unique email addresses on example domains, E.164 mobile numbers of seven
// countries with matching locales and time zones, attributes (country,
// loyalty_points, vip, and the personal birth_date, declared if missing),
// consents for email and SMS with their proof, and memberships of three lists
// (Newsletter, VIP, Prospects, created if missing). The same seed gives the
// same people. It writes through the import's batched path (sealed by a
// worker pool, 500 contacts per transaction on SQLite, 1000 on
// PostgreSQL); progress is called after each
// batch with the number of contacts done. Seeding again with the same seed
// updates the same contacts.
func (s *Service) Seed(ctx context.Context, tenantID string, n int, seed int64, progress func(done int)) (SeedResult, error) {
	var res SeedResult
	if n < 0 || n > 100_000_000 {
		return res, invalid("contacts", "must be 0 to 100000000")
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return res, err
	}
	have, err := s.AttributeSchema(ctx, tenantID)
	if err != nil {
		return res, err
	}
	declared := map[string]bool{}
	for _, d := range have {
		declared[d.Key] = true
	}
	for _, d := range seedAttributes {
		if !declared[d.Key] {
			if _, err := s.DefineAttribute(ctx, tenantID, d); err != nil {
				return res, fmt.Errorf("contacts: seed attribute %s: %w", d.Key, err)
			}
		}
	}
	lists, err := s.Lists(ctx, tenantID)
	if err != nil {
		return res, err
	}
	listID := map[string]string{}
	for _, l := range lists {
		listID[l.Name] = l.ID
	}
	for _, name := range seedListNames {
		if listID[name] == "" {
			l, err := s.CreateList(ctx, tenantID, name, "Synthetic list")
			if err != nil && !errors.Is(err, ErrConflict) {
				return res, err
			}
			listID[name] = l.ID
		}
		res.Lists = append(res.Lists, List{ID: listID[name], Name: name})
	}
	wording := WordingHash(seedWording)
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO consent_wordings (tenant_id, hash, version, text, created_at) VALUES ($1, $2, 'seed-v1', $3, $4)
			ON CONFLICT (tenant_id, hash) DO NOTHING`, wording, seedWording, micros(s.now()))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("contacts: seed consent wording: %w", err)
	}

	f := gofakeit.New(uint64(seed)) // #nosec G115 -- any bit pattern of the seed is a valid seed
	birthStart, birthEnd := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2007, 12, 31, 0, 0, 0, 0, time.UTC)
	gen := func(i int) *prepRow {
		first, last := f.FirstName(), f.LastName()
		c := seedCountries[f.Number(0, len(seedCountries)-1)]
		v := validated{
			email:  fmt.Sprintf("%s.%s.%d@%s", asciiLower(first), asciiLower(last), i+1, seedDomains[f.Number(0, len(seedDomains)-1)]),
			first:  first,
			last:   last,
			locale: c.locale,
			tz:     c.tz,
			plain:  map[string]any{"country": c.code, "loyalty_points": float64(f.Number(0, 5000)), "vip": f.Number(1, 100) <= 5},
		}
		if f.Number(1, 100) <= 85 {
			v.phone = "+" + c.callingCode + c.mobile(f)
		}
		if f.Number(1, 100) <= 60 {
			v.personal = map[string]any{"birth_date": f.DateRange(birthStart, birthEnd).Format(time.DateOnly)}
		}
		r := &prepRow{line: int64(i + 1), v: v, id: newID()}
		src := SourceForm
		if f.Number(1, 100) <= 40 {
			src = SourceImport
		}
		switch p := f.Number(1, 100); {
		case p <= 70:
			r.consents = append(r.consents, ConsentInput{Channel: ChannelEmail, Purpose: DefaultPurpose, Status: ConsentGranted, Source: src, WordingHash: wording, WordingVersion: "seed-v1"})
		case p <= 80:
			r.consents = append(r.consents, ConsentInput{Channel: ChannelEmail, Purpose: DefaultPurpose, Status: ConsentWithdrawn, Source: src, WordingHash: wording, WordingVersion: "seed-v1"})
		case p <= 85:
			r.consents = append(r.consents, ConsentInput{Channel: ChannelEmail, Purpose: DefaultPurpose, Status: ConsentPending, Source: src, WordingHash: wording, WordingVersion: "seed-v1"})
		}
		if v.phone != "" && f.Number(1, 100) <= 45 {
			r.consents = append(r.consents, ConsentInput{Channel: ChannelSMS, Purpose: DefaultPurpose, Status: ConsentGranted, Source: src, WordingHash: wording, WordingVersion: "seed-v1"})
		}
		if f.Number(1, 100) <= 50 {
			r.lists = append(r.lists, listID["Newsletter"])
		}
		if v.plain["vip"] == true {
			r.lists = append(r.lists, listID["VIP"])
		}
		if f.Number(1, 100) <= 20 {
			r.lists = append(r.lists, listID["Prospects"])
		}
		return r
	}
	batchSize := defaultBatchSize(s.DB.Dialect())
	produce := func(ctx context.Context, emit func(*batch) error) error {
		for start := 0; start < n; start += batchSize {
			b := &batch{}
			for i := start; i < min(start+batchSize, n); i++ {
				b.rows = append(b.rows, gen(i))
			}
			if err := emit(b); err != nil {
				return err
			}
		}
		return nil
	}
	prepare := func(r *prepRow) {
		sealed, err := sealContact(cr, nil, r.v)
		if err != nil {
			r.err = &lineError{reason: "could not be encrypted"}
			return
		}
		r.sealed = sealed
		r.plainJSON()
	}
	w := &writer{s: s, cr: cr, dialect: s.DB.Dialect(), mode: ModeUpsert, source: "seed", action: "contact.seed",
		fields: []audit.Change{{Field: "email", Personal: true}, {Field: "phone", Personal: true}, {Field: "first_name", Personal: true},
			{Field: "last_name", Personal: true}, {Field: "attributes.birth_date", Personal: true}, {Field: "attributes.country"},
			{Field: "attributes.loyalty_points"}, {Field: "attributes.vip"}, {Field: "locale"}, {Field: "timezone"}}}
	done := 0
	write := func(ctx context.Context, b *batch) error {
		var failed int64
		err := w.writeBatch(ctx, tenantID, b.rows, s.now(), nil, func(st batchStats) {
			failed = st.failed
			res.Created += st.created
			res.Updated += st.updated
			done += len(b.rows)
			if progress != nil {
				progress(done)
			}
		})
		if err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("contacts: seed: %d synthetic contacts failed", failed)
		}
		return nil
	}
	if err := w.inBulk(ctx, tenantID, func() error { return runPipeline(ctx, min(max(1, runtimeWorkers()), 16), produce, prepare, write) }); err != nil {
		return res, fmt.Errorf("contacts: seed: %w", err)
	}
	return res, nil
}
