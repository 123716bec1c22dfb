// Package privacy carries out a tenant's GDPR and reversibility duties:
// data-subject requests (PRIV-4), retention per purpose (PRIV-3),
// anonymised copies (TEST-2), purges with signed reports (REV-1), the full
// export of a tenant and its re-import (REV-2), and the destruction of a
// tenant at contract end with a signed certificate (REV-3). It is a domain
// service: no HTTP, no CLI; internal/web and cmd/relais call it.
//
// # Which functions to use
//
// Everything hangs off a [Service]. Subject requests: [Service.Access]
// (everything held on one person, as an [AccessReport]), [Service.Rectify],
// [Service.Erase], [Service.Restrict]; each is recorded as a [Request] with a
// deadline ([Service.Requests] lists them, overdue flagged), and
// [Service.OpenRequest] records one to handle later. Retention:
// [Service.SetRetentionRule], [Service.ApplyRetention] (with a dry run), and
// [Service.Run], the server's job. Purge: [Service.Purge]. Anonymised copy:
// [Service.Anonymize]. Export: [Service.Export] writes the archive into an
// encrypting writer ([NewAESWriter] or [NewPGPWriter]); [VerifyArchive]
// checks one against its manifest; [Service.Import] loads one into an empty
// tenant. Destruction: [Service.RequestDestruction], then
// [Service.ConfirmDestruction]; [Service.RunDueDestructions] destroys the
// confirmed ones that are due; [VerifyCertificate] checks a certificate.
// [ScanTenant] and [Fingerprint] read every stored value of a tenant, for
// checks.
//
// # Tables
//
// Export, import, anonymisation and destruction do not list the tables:
// they read the schema (every table with a tenant_id column, in
// foreign-key order), so a table added by a later migration is covered.
// What they must know is in codec.go: the field label of each encrypted
// column (sealedFields; an unknown "_enc" column is exported as opaque
// ciphertext and named in the manifest), and what is not exported
// (excludedTables, excludedColumns: keys, credentials, sessions, the audit
// trail's internals). A table that holds secrets must be added there. A
// table whose rows carry their own key (keyColumns: contacts.key_enc, the
// per-contact keys) has its fields opened through that key, and the import
// gives each row a new one.
//
// # Hooks
//
// Three small interfaces let key management and backups plug in:
// [ContactShredder] (a per-contact key destroyed on erasure, so that a
// backup cannot bring the person back; app.Open sets contacts.KeyShredder),
// [TenantKeyShredder] ([StoreKeyShredder] by default; app.Open sets
// tenants.Service, whose shredding records outlive the destroyed tenant)
// and [BackupSets] (a tenant's backup sets deleted or left to expire on
// destruction, listed in the certificate).
//
// # Errors
//
// Errors can be tested with errors.Is: [ErrNotFound] (no such person in
// this tenant: another tenant's contact is not found either), [ErrInvalid],
// [ErrNotEmpty], [ErrBusy] (campaigns, imports or messages still running),
// [ErrBadCode], [ErrBadCertificate], [ErrBadStream]. Nothing is written when
// an operation fails: each is one transaction, or (export, anonymised copy)
// leaves nothing behind.
package privacy
