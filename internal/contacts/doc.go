// Package contacts keeps a tenant's contacts, their consents, the
// blocklist, lists and segments, and moves contacts in and out in bulk
// (CORE-2, CORE-3). It is a domain service: no HTTP, no CLI; internal/web and
// cmd/relais call it.
//
// # Which functions to use
//
// Everything hangs off a [Service]:
//
//	svc := &contacts.Service{DB: db, Keyring: keyring}
//
// One contact: [Service.Create], [Service.Get], [Service.Update] (a patch),
// [Service.Delete], [Service.FindByEmail], [Service.FindByPhone], and
// [Service.List] (cursor pagination, filters by status, list or segment).
// Custom attributes must be declared first ([Service.DefineAttribute]); an
// attribute declared personal is encrypted like the email and cannot be
// used in a segment filter.
//
// Consent (PRIV-5): [Service.Grant], [Service.Withdraw] and
// [Service.SetPending] record the new status with its proof (source, IP,
// wording and its version). Double opt-in: SetPending returns a signed,
// expiring confirmation token that [Service.Confirm] accepts once. Every
// message carries an unsubscribe token ([Service.UnsubscribeToken]) whose
// one-click handler (RFC 8058 List-Unsubscribe-Post) is [Service.Unsubscribe].
// Before each send the router asks [Service.CanSend]: consent granted for the
// channel and purpose, contact active, address not on the blocklist. The
// blocklist ([Service.Block], [Service.Unblock], [Service.IsBlocked]) holds
// blind indexes only, and no import or API call on contacts can override it.
//
// Lists are static ([Service.CreateList], [Service.AddToList]...). Segments
// are saved filters in the language of package filter, validated against the
// attribute schema when saved and compiled to parameterised SQL at each use
// ([Service.CreateSegment], [Service.CountSegment], [Service.CountFilter]).
//
// Bulk: [Service.Import] reads a CSV file (streaming, constant memory,
// resumable), [Service.Export] writes CSV or JSON Lines (optionally
// pseudonymised, PRIV-2), and [Service.Seed] makes reproducible synthetic
// contacts (TEST-1) through the same batched path as the import.
//
// # Personal data
//
// Email, phone, first and last names, personal attributes and the IP
// address a consent came from are sealed with the tenant's data key
// (internal/tenants Crypto, AES-256-GCM) before they reach the store; email
// and phone also get blind indexes (HMAC) for lookups, de-duplication and the
// blocklist (DATA-1, PRIV-1). Every call that returns decrypted personal data
// appends one access event (LOG-2) in the same transaction as the read: one
// per call, naming the contacts read, never one per row. Every change appends
// a change event naming the personal fields that changed, never their values
// (LOG-1). Import error reports name the line, the column and the rule
// broken, never the value.
//
// # Errors
//
// Bad input yields a [*ValidationError] naming the field (or
// "attributes.<key>"), and nothing is written. Other errors can be tested with
// errors.Is: [ErrNotFound], [ErrConflict], [ErrBlocklisted], [ErrInvalidToken],
// [ErrTokenExpired], [ErrEmptyFile], [ErrFileChanged], [ErrBadFile]. A segment
// filter that does not parse or compile yields a *filter.Error with a
// position.
package contacts
