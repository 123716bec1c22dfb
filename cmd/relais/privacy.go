package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/tenants"
)

// addPrivacyCommands registers issue 9's commands: `relais privacy ...`,
// `relais anonymize`, `relais certificate verify`, and `relais tenant
// export|import|destroy`.
func (c *cli) addPrivacyCommands(root *cobra.Command) {
	root.AddCommand(c.privacyCmd(), c.anonymizeCmd(), c.certificateCmd())
	for _, sub := range root.Commands() {
		if sub.Name() == "tenant" {
			sub.Short = "Create, list, show, disable, enable, export, import and destroy tenants"
			sub.AddCommand(c.tenantExportCmd(), c.tenantImportCmd(), c.tenantDestroyCmd())
		}
	}
}

// privacyErr turns privacy errors into what-to-do messages.
func privacyErr(err error, tc *tenantCtx) error {
	switch {
	case errors.Is(err, privacy.ErrNotFound):
		return fmt.Errorf("%v (tenant %s); check the address, or %s", err, tc.t.Slug, tc.see("contacts list"))
	case errors.Is(err, privacy.ErrBusy):
		return fmt.Errorf("%v; then run the command again", err)
	case errors.Is(err, privacy.ErrBadCode):
		return fmt.Errorf("%v: use the code printed by `relais tenant destroy --tenant %s`, or request a new one", err, tc.t.Slug)
	}
	return err
}

func subjectFlags(cmd *cobra.Command) {
	cmd.Flags().String("tenant", "", "tenant slug or id")
	cmd.Flags().String("email", "", "the person's email address")
	cmd.Flags().String("phone", "", "the person's phone number (E.164)")
	cmd.Flags().String("contact", "", "the person's contact id")
}

func subjectOf(cmd *cobra.Command) (privacy.Subject, error) {
	var s privacy.Subject
	s.Email, _ = cmd.Flags().GetString("email")
	s.Phone, _ = cmd.Flags().GetString("phone")
	s.ContactID, _ = cmd.Flags().GetString("contact")
	n := 0
	for _, v := range []string{s.Email, s.Phone, s.ContactID} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return s, usageError{fmt.Errorf("name the person with one of --email, --phone or --contact; see `%s --help`", cmd.CommandPath())}
	}
	return s, nil
}

// writeNewFile writes a file 0600 through fn, removing it on failure.
func writeNewFile(path string, fn func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600) // #nosec G304 -- the operator's output path
	if err != nil {
		return fmt.Errorf("%w; choose a path that does not exist yet", err)
	}
	if err := fn(f); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

func (c *cli) privacyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "privacy", Short: "Data-subject requests, retention rules and purges (GDPR)"}

	access := &cobra.Command{
		Use:   "access --tenant T (--email E | --phone P | --contact ID) --out FILE",
		Short: "Answer an access or portability request: everything held on one person, as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "out"); err != nil {
				return err
			}
			sub, err := subjectOf(cmd)
			if err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			kind := privacy.KindAccess
			if p, _ := cmd.Flags().GetBool("portability"); p {
				kind = privacy.KindPortability
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				req, rep, err := tc.a.Privacy.Access(tc.ctx, tc.t.ID, sub, kind, "cli")
				if err != nil {
					return privacyErr(err, tc)
				}
				if err := writeNewFile(out, func(w io.Writer) error { return printJSON(w, rep) }); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "request %s (%s) completed: %s written (%d messages, %d consent proofs)\n", req.ID, kind, out, len(rep.Messages), len(rep.ConsentHistory))
				return nil
			})
		},
	}
	subjectFlags(access)
	access.Flags().String("out", "", "file to write (created 0600; must not exist)")
	access.Flags().Bool("portability", false, "record the request as a portability request")

	erase := &cobra.Command{
		Use:   "erase --tenant T (--email E | --phone P | --contact ID) [--suppress]",
		Short: "Answer an erasure request: the person's data deleted, messages stopped and cleared",
		Long: `Erase one person: their contact's personal fields, list memberships and
consent proofs are deleted, their messages' recipients and contents
overwritten, and messages not yet sent stopped; anonymous statistics stay.
With --suppress, only the keyed hashes of their addresses are kept, on the
blocklist, so that no later import brings them back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			sub, err := subjectOf(cmd)
			if err != nil {
				return err
			}
			suppress, _ := cmd.Flags().GetBool("suppress")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				req, res, err := tc.a.Privacy.Erase(tc.ctx, tc.t.ID, sub, privacy.EraseOptions{Suppress: suppress, By: "cli"})
				if err != nil {
					return privacyErr(err, tc)
				}
				fmt.Fprintf(c.stdout, "request %s completed: contact %s erased; %d messages cleared, %d stopped; suppression: %v\n",
					req.ID, res.ContactID, res.MessagesCleared, res.MessagesStopped, res.Suppressed)
				return nil
			})
		},
	}
	subjectFlags(erase)
	erase.Flags().Bool("suppress", false, "keep the address hashes on the blocklist so the person is not re-imported")

	restrict := &cobra.Command{
		Use:   "restrict --tenant T (--email E | --phone P | --contact ID) [--objection]",
		Short: "Answer a restriction or objection request: every consent withdrawn, processing stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			sub, err := subjectOf(cmd)
			if err != nil {
				return err
			}
			kind := privacy.KindRestriction
			if o, _ := cmd.Flags().GetBool("objection"); o {
				kind = privacy.KindObjection
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				req, err := tc.a.Privacy.Restrict(tc.ctx, tc.t.ID, sub, kind, "cli")
				if err != nil {
					return privacyErr(err, tc)
				}
				fmt.Fprintf(c.stdout, "request %s (%s) completed: %s\n", req.ID, kind, req.Result)
				return nil
			})
		},
	}
	subjectFlags(restrict)
	restrict.Flags().Bool("objection", false, "record the request as an objection")

	rectify := &cobra.Command{
		Use:   "rectify --tenant T (--email E | --phone P | --contact ID) --set FIELD=VALUE ...",
		Short: "Answer a rectification request: correct the person's email, phone, names, locale or time zone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "set"); err != nil {
				return err
			}
			sub, err := subjectOf(cmd)
			if err != nil {
				return err
			}
			sets, _ := cmd.Flags().GetStringArray("set")
			var p contacts.Patch
			for _, kv := range sets {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return usageError{fmt.Errorf("--set %q: use FIELD=VALUE", kv)}
				}
				v = strings.TrimSpace(v)
				switch k {
				case "email":
					p.Email = &v
				case "phone":
					p.Phone = &v
				case "first_name":
					p.FirstName = &v
				case "last_name":
					p.LastName = &v
				case "locale":
					p.Locale = &v
				case "timezone":
					p.TimeZone = &v
				default:
					return usageError{fmt.Errorf("--set %s: the field must be email, phone, first_name, last_name, locale or timezone", k)}
				}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				req, err := tc.a.Privacy.Rectify(tc.ctx, tc.t.ID, sub, p, "cli")
				var ve *contacts.ValidationError
				if errors.As(err, &ve) {
					return fmt.Errorf("--set %s: %s (request %s rejected)", ve.Field, ve.Message, req.ID)
				}
				if err != nil {
					return privacyErr(err, tc)
				}
				fmt.Fprintf(c.stdout, "request %s (rectification) completed\n", req.ID)
				return nil
			})
		},
	}
	subjectFlags(rectify)
	rectify.Flags().StringArray("set", nil, "FIELD=VALUE to correct (repeatable)")

	requests := &cobra.Command{
		Use:   "requests --tenant T [--open]",
		Short: "List the tenant's subject requests with their deadlines (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			open, _ := cmd.Flags().GetBool("open")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				list, err := tc.a.Privacy.Requests(tc.ctx, tc.t.ID, open)
				if err != nil {
					return err
				}
				if list == nil {
					list = []privacy.Request{}
				}
				return printJSON(c.stdout, list)
			})
		},
	}
	requests.Flags().String("tenant", "", "tenant slug or id")
	requests.Flags().Bool("open", false, "only open requests")

	cmd.AddCommand(access, rectify, erase, restrict, requests, c.retentionCmd(), c.purgeCmd())
	return cmd
}

func (c *cli) retentionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "retention", Short: "Retention rules per purpose, and their application"}
	set := &cobra.Command{
		Use:   "set --tenant T --kind inactive_contacts|message_content|bounced_contacts --months N [--disable]",
		Short: "Set a retention rule",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "kind", "months"); err != nil {
				return err
			}
			kind, _ := cmd.Flags().GetString("kind")
			months, _ := cmd.Flags().GetInt("months")
			disable, _ := cmd.Flags().GetBool("disable")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				r, err := tc.a.Privacy.SetRetentionRule(tc.ctx, tc.t.ID, kind, months, !disable)
				if errors.Is(err, privacy.ErrInvalid) {
					return usageError{err}
				}
				if err != nil {
					return err
				}
				return printJSON(c.stdout, r)
			})
		},
	}
	set.Flags().String("tenant", "", "tenant slug or id")
	set.Flags().String("kind", "", "inactive_contacts, message_content or bounced_contacts")
	set.Flags().Int("months", 0, "retention period in months")
	set.Flags().Bool("disable", false, "keep the rule but do not apply it")
	runCmd := &cobra.Command{
		Use:   "run --tenant T [--dry-run]",
		Short: "Apply the tenant's retention rules now and print the report (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			dry, _ := cmd.Flags().GetBool("dry-run")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				rep, err := tc.a.Privacy.ApplyRetention(tc.ctx, tc.t.ID, dry)
				if err != nil {
					return err
				}
				return printJSON(c.stdout, rep)
			})
		},
	}
	runCmd.Flags().String("tenant", "", "tenant slug or id")
	runCmd.Flags().Bool("dry-run", false, "only count what the rules would delete")
	cmd.AddCommand(set, runCmd)
	return cmd
}

func (c *cli) purgeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "purge --tenant T --scope campaign|list|contacts|all [--id ID] [--dry-run] [--out FILE]",
		Short: "Purge a scope of a tenant's data, with a signed report in the audit trail",
		Long: `Purge a campaign's messages (--scope campaign --id ID), a list's members
and the list (--scope list --id ID), every contact (--scope contacts), or
every business row (--scope all: users, roles, settings, keys and the audit
trail stay). --dry-run only counts. The report (what, how much, the method,
the result, the times) is signed with the tenant's audit key and stored in
its audit trail; --out also writes it to a file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "scope"); err != nil {
				return err
			}
			scope, _ := cmd.Flags().GetString("scope")
			id, _ := cmd.Flags().GetString("id")
			dry, _ := cmd.Flags().GetBool("dry-run")
			out, _ := cmd.Flags().GetString("out")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				rep, err := tc.a.Privacy.Purge(tc.ctx, tc.t.ID, scope, id, dry)
				if errors.Is(err, privacy.ErrInvalid) {
					return usageError{err}
				}
				if err != nil {
					return privacyErr(err, tc)
				}
				if out != "" {
					if err := writeNewFile(out, func(w io.Writer) error { return printJSON(w, rep) }); err != nil {
						return err
					}
				}
				return printJSON(c.stdout, rep)
			})
		},
	}
	cmd.Flags().String("tenant", "", "tenant slug or id")
	cmd.Flags().String("scope", "", "campaign, list, contacts or all")
	cmd.Flags().String("id", "", "the campaign or list id")
	cmd.Flags().Bool("dry-run", false, "only count")
	cmd.Flags().String("out", "", "also write the report to this file")
	return cmd
}

func (c *cli) tenantExportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export --tenant T --out FILE [--pgp-recipient KEYFILE | --key-out KEYFILE]",
		Short: "Export all of a tenant's data in open formats, encrypted (OpenPGP or AES-256-GCM)",
		Long: `Write a tar archive of the tenant's data: JSON Lines and CSV per table,
a manifest with row counts and SHA-256 of every file, and the audit trail
with its signed checkpoint. The archive is encrypted: to the OpenPGP public
key in --pgp-recipient (gpg --decrypt opens it), or else with AES-256-GCM
under a fresh key written (hex) to --key-out (default FILE.key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "out"); err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			pgpFile, _ := cmd.Flags().GetString("pgp-recipient")
			keyOut, _ := cmd.Flags().GetString("key-out")
			if pgpFile != "" && keyOut != "" {
				return usageError{errors.New("give --pgp-recipient or --key-out, not both")}
			}
			var recipients openpgp.EntityList
			if pgpFile != "" {
				var err error
				if recipients, err = privacy.ReadPGPRecipients(pgpFile); err != nil {
					return usageError{fmt.Errorf("--pgp-recipient: %w", err)}
				}
			} else if keyOut == "" {
				keyOut = out + ".key"
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				var key []byte
				if keyOut != "" {
					key = make([]byte, 32)
					_, _ = rand.Read(key)
					defer clear(key)
					if err := writeNewFile(keyOut, func(w io.Writer) error { _, err := fmt.Fprintln(w, hex.EncodeToString(key)); return err }); err != nil {
						return err
					}
				}
				var res privacy.ExportResult
				err := writeNewFile(out, func(w io.Writer) error {
					var enc io.WriteCloser
					var err error
					if recipients != nil {
						enc, err = privacy.NewPGPWriter(w, recipients, filepath.Base(strings.TrimSuffix(out, filepath.Ext(out)))+".tar")
					} else {
						enc, err = privacy.NewAESWriter(w, key)
					}
					if err != nil {
						return err
					}
					if res, err = tc.a.Privacy.Export(tc.ctx, tc.t, enc, ""); err != nil {
						return err
					}
					return enc.Close()
				})
				if err != nil {
					if keyOut != "" {
						_ = os.Remove(keyOut)
					}
					return err
				}
				var rows int64
				for _, n := range res.Manifest.Counts {
					rows += n
				}
				how := "OpenPGP to " + pgpFile
				if keyOut != "" {
					how = "AES-256-GCM, key in " + keyOut
				}
				fmt.Fprintf(c.stdout, "exported tenant %s: %d tables, %d rows, %d audit events -> %s (%s)\n",
					tc.t.Slug, len(res.Manifest.Counts), rows, res.Manifest.AuditEvents, out, how)
				return nil
			})
		},
	}
	cmd.Flags().String("tenant", "", "tenant slug or id")
	cmd.Flags().String("out", "", "archive to write (must not exist)")
	cmd.Flags().String("pgp-recipient", "", "OpenPGP public key file (armored or binary) to encrypt to")
	cmd.Flags().String("key-out", "", "where to write the AES-256 key (hex); default FILE.key")
	return cmd
}

func (c *cli) tenantImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --tenant T --in FILE (--key KEYFILE | --pgp-identity KEYFILE)",
		Short: "Load a tenant export into an empty tenant (verified against its manifest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "in"); err != nil {
				return err
			}
			in, _ := cmd.Flags().GetString("in")
			keyFile, _ := cmd.Flags().GetString("key")
			idFile, _ := cmd.Flags().GetString("pgp-identity")
			if (keyFile == "") == (idFile == "") {
				return usageError{fmt.Errorf("give --key (AES export) or --pgp-identity (OpenPGP export); see `%s --help`", cmd.CommandPath())}
			}
			var key []byte
			if keyFile != "" {
				b, err := os.ReadFile(keyFile) // #nosec G304 -- the operator's key file
				if err != nil {
					return err
				}
				if key, err = hex.DecodeString(strings.TrimSpace(string(b))); err != nil || len(key) != 32 {
					return usageError{fmt.Errorf("--key: %s does not hold a 32-byte key in hex", keyFile)}
				}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				open := func() (io.ReadCloser, error) {
					f, err := os.Open(in) // #nosec G304 -- the operator's archive
					if err != nil {
						return nil, err
					}
					var r io.Reader
					if key != nil {
						r, err = privacy.NewAESReader(f, key)
					} else {
						r, err = privacy.NewPGPReader(f, idFile)
					}
					if err != nil {
						_ = f.Close()
						return nil, err
					}
					return struct {
						io.Reader
						io.Closer
					}{r, f}, nil
				}
				res, err := tc.a.Privacy.Import(tc.ctx, tc.t, open)
				if errors.Is(err, privacy.ErrNotEmpty) {
					return fmt.Errorf("%v; create a new tenant with `relais tenant create` and import into it", err)
				}
				if err != nil {
					return err
				}
				var rows int64
				for _, n := range res.Counts {
					rows += n
				}
				fmt.Fprintf(c.stdout, "imported %d rows in %d tables into tenant %s\n", rows, len(res.Counts), tc.t.Slug)
				return nil
			})
		},
	}
	cmd.Flags().String("tenant", "", "target tenant (must be empty)")
	cmd.Flags().String("in", "", "the export archive")
	cmd.Flags().String("key", "", "file with the AES-256 key (hex) of an AES export")
	cmd.Flags().String("pgp-identity", "", "OpenPGP secret key file (unprotected) of a PGP export")
	return cmd
}

func (c *cli) anonymizeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "anonymize --tenant T --into NEW_SLUG [--name NAME]",
		Short: "Copy a tenant into a new tenant with every personal value replaced by a consistent fake",
		Long: `Make an anonymised copy of a tenant, for reproducing problems: every
personal field replaced by a fake that is consistent within the copy (joins
and duplicates behave as in the source), free text scrubbed, message bodies
replaced, under the new tenant's own key; connectors and routes are not
copied and nothing is left to send. The copy cannot be reversed. With
--into-data-dir (or RELAIS_INTO_DATABASE_URL), the new tenant is made in
another store, a staging platform's, migrated first if needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "into"); err != nil {
				return err
			}
			into, _ := cmd.Flags().GetString("into")
			name, _ := cmd.Flags().GetString("name")
			if err := tenants.ValidateSlug(into); err != nil {
				return usageError{fmt.Errorf("--into: %w", err)}
			}
			intoDir, _ := cmd.Flags().GetString("into-data-dir")
			intoURL := os.Getenv("RELAIS_INTO_DATABASE_URL")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				dst := tc.a.Privacy
				where := "this store"
				if intoDir != "" || intoURL != "" {
					cfg := tc.a.Config
					cfg.DataDir, cfg.DatabaseURL, cfg.MasterKeyFile = intoDir, intoURL, os.Getenv("RELAIS_INTO_MASTER_KEY_FILE")
					if cfg.DataDir == "" {
						cfg.DataDir = tc.a.Config.DataDir
					}
					if cfg.DataDir == tc.a.Config.DataDir && cfg.DatabaseURL == tc.a.Config.DatabaseURL {
						return usageError{errors.New("--into-data-dir (or RELAIS_INTO_DATABASE_URL) names the source store itself; omit it to copy into this store")}
					}
					other, err := app.Open(tc.ctx, cfg, app.NewLogger(cfg, c.stderr), true)
					if err != nil {
						return fmt.Errorf("the target store: %w", err)
					}
					defer func() { _ = other.Close() }()
					dst, where = other.Privacy, "the store in "+cfg.DataDir
					if cfg.DatabaseURL != "" {
						where = "the PostgreSQL store of RELAIS_INTO_DATABASE_URL"
					}
				}
				res, err := tc.a.Privacy.AnonymizeInto(tc.ctx, tc.t, name, into, dst)
				if err != nil {
					return tenantErr(err)
				}
				var rows int64
				for _, n := range res.Counts {
					rows += n
				}
				fmt.Fprintf(c.stdout, "anonymised copy of %s created as tenant %s (%s) in %s: %d rows in %d tables\n", tc.t.Slug, res.Tenant.Slug, res.Tenant.ID, where, rows, len(res.Counts))
				return nil
			})
		},
	}
	cmd.Flags().String("tenant", "", "source tenant slug or id")
	cmd.Flags().String("into", "", "slug of the new tenant")
	cmd.Flags().String("name", "", "name of the new tenant (default: the source's, marked anonymised)")
	cmd.Flags().String("into-data-dir", "", "copy into another store: its data directory (SQLite, and its master.key); RELAIS_INTO_DATABASE_URL names a PostgreSQL one, RELAIS_INTO_MASTER_KEY_FILE its master key")
	return cmd
}

func (c *cli) tenantDestroyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "destroy --tenant T [--delay D] | --confirm CODE [--now] [--out FILE] | --cancel",
		Short: "Destroy a tenant at contract end (two steps), with a signed destruction certificate",
		Long: `Step one, without --confirm: record the request and print a
confirmation code.
Step two, --confirm CODE: confirm it; the server destroys the tenant when
due (or run step two again after that), or at once with --now. The delay
is --delay, or the setting privacy.destroy_delay (30 days). Destruction
deletes every row of the tenant, shreds its keys, deletes or expires its
backup sets, and writes a certificate signed with the platform key: --out
FILE writes it as JSON, and as HTML beside it (FILE.html). It is refused
while campaigns run, imports run or messages wait to be sent. --cancel
cancels a pending request. Check a certificate with
` + "`relais certificate verify FILE`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			code, _ := cmd.Flags().GetString("confirm")
			now, _ := cmd.Flags().GetBool("now")
			cancel, _ := cmd.Flags().GetBool("cancel")
			delay, _ := cmd.Flags().GetDuration("delay")
			out, _ := cmd.Flags().GetString("out")
			if cancel && (code != "" || now) {
				return usageError{errors.New("--cancel goes alone")}
			}
			if now && code == "" {
				return usageError{errors.New("--now needs --confirm CODE")}
			}
			ref, _ := cmd.Flags().GetString("tenant")
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = a.Close() }()
			ctx := operatorContext(cmd.Context())
			t, err := a.Tenants.Get(ctx, ref)
			if errors.Is(err, tenants.ErrNotFound) && out != "" {
				// Already destroyed: re-issue the stored certificate.
				sc, cerr := a.Privacy.StoredCertificate(ctx, ref)
				if cerr != nil {
					return tenantErr(err)
				}
				return writeCertificate(c, out, sc)
			}
			if err != nil {
				return tenantErr(err)
			}
			tc := &tenantCtx{ctx: ctx, a: a, t: t}
			switch {
			case cancel:
				if err := a.Privacy.CancelDestruction(ctx, t); err != nil {
					return privacyErr(err, tc)
				}
				fmt.Fprintf(c.stdout, "destruction of tenant %s cancelled\n", t.Slug)
				return nil
			case code == "":
				d, code, err := a.Privacy.RequestDestruction(ctx, t, delay, "cli")
				if err != nil {
					return privacyErr(err, tc)
				}
				fmt.Fprintf(c.stdout, "destruction of tenant %s requested, due %s\nconfirmation code: %s\nconfirm with `relais tenant destroy --tenant %s --confirm %s` (add --now to destroy at once)\n",
					t.Slug, d.DueAt.Format(time.RFC3339), code, t.Slug, code)
				return nil
			}
			d, sc, err := a.Privacy.ConfirmDestruction(ctx, t, code, now)
			if err != nil {
				return privacyErr(err, tc)
			}
			if sc == nil {
				fmt.Fprintf(c.stdout, "destruction of tenant %s confirmed; due %s (the server destroys it then; --now destroys it at once)\n", t.Slug, d.DueAt.Format(time.RFC3339))
				return nil
			}
			fmt.Fprintf(c.stdout, "tenant %s destroyed\n", t.Slug)
			if out == "" {
				return sc.WriteJSON(c.stdout)
			}
			return writeCertificate(c, out, sc)
		},
	}
	cmd.Flags().String("tenant", "", "tenant slug or id")
	cmd.Flags().String("confirm", "", "the confirmation code of step one")
	cmd.Flags().Bool("now", false, "destroy at once instead of when due")
	cmd.Flags().Bool("cancel", false, "cancel a pending destruction")
	cmd.Flags().Duration("delay", 0, "delay before the destruction is due (default: the setting privacy.destroy_delay, 30 days)")
	cmd.Flags().String("out", "", "write the destruction certificate here (JSON; FILE.html beside it)")
	return cmd
}

func writeCertificate(c *cli, out string, sc *privacy.SignedCertificate) error {
	if err := writeNewFile(out, sc.WriteJSON); err != nil {
		return err
	}
	if err := writeNewFile(out+".html", sc.WriteHTML); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "destruction certificate written to %s and %s.html\n", out, out)
	return nil
}

func (c *cli) certificateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certificate", Short: "Check destruction certificates"}
	verify := &cobra.Command{
		Use:   "verify FILE [--key VERIFIER_KEY]",
		Short: "Check a destruction certificate's signature (JSON or HTML)",
		Long: `Check that a destruction certificate (the JSON file, or the HTML page
embedding it) is signed and unaltered. With --key (the platform key, as
` + "`relais audit pubkey --operator`" + ` prints it, or the file it writes) the signature must be by that key;
without it, the key named in the file is used and printed.`,
		Args: exactArgs(1, "the certificate file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, _ := cmd.Flags().GetString("key")
			if key != "" {
				if kb, err := os.ReadFile(key); err == nil { // #nosec G304 -- the operator's key file
					key = strings.TrimSpace(string(kb))
				}
			}
			b, err := os.ReadFile(args[0]) // #nosec G304 -- the file to check
			if err != nil {
				return err
			}
			cert, err := privacy.VerifyCertificate(b, key)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(c.stdout, "OK: destruction of tenant %s (%s) on %s, %d rows, %d keys shredded, signed",
				cert.TenantSlug, cert.TenantID, cert.DestroyedAt.Format(time.RFC3339), cert.TotalRows, len(cert.KeysShredded))
			if key == "" {
				fmt.Fprintln(c.stdout, " by the key named in the file (pass --key to require the platform key)")
			} else {
				fmt.Fprintln(c.stdout, " by the given key")
			}
			return nil
		},
	}
	verify.Flags().String("key", "", "the platform's verifier key (or a file holding it) the signature must be by")
	cmd.AddCommand(verify)
	return cmd
}
