package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/sftpd"
)

// sftpCmd is `relais sftp account add|list|remove`.
func (c *cli) sftpCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sftp", Short: "Manage the SFTP file exchange (accounts with SSH keys and allowed networks)"}
	acct := &cobra.Command{Use: "account", Short: "Add, list and remove a tenant's SFTP accounts"}
	var asJSON bool

	add := &cobra.Command{
		Use:   "add --tenant T --name N --key PUBKEY_FILE --allow CIDR[,CIDR]",
		Short: "Add an SFTP account: it logs in as <tenant slug>.<name> with its key, from its networks only",
		Long: `Add an SFTP account to a tenant. It logs in as "<tenant slug>.<name>" with
one of its SSH public keys (Ed25519, ECDSA, or RSA of at least 3072 bits;
--key may be repeated, each file may hold several authorized_keys lines),
only from the networks of --allow (checked before authentication). It sees
/inbox (uploads: contact imports with --mode/--map, reports in /outbox) and
/outbox (downloads).`,
		Example: `  relais sftp account add --tenant acme --name crm --key crm.pub --allow 203.0.113.0/24
  relais sftp account add --tenant acme --name feed --key feed.pub --allow 127.0.0.1/32 --map Mail=email,Mobile=phone --expires 90d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "name", "key", "allow"); err != nil {
				return err
			}
			f := cmd.Flags()
			na := sftpd.NewAccount{}
			na.Name, _ = f.GetString("name")
			keyFiles, _ := f.GetStringSlice("key")
			for _, kf := range keyFiles {
				data, err := os.ReadFile(kf) // #nosec G304 -- a file the operator names
				if err != nil {
					return usageError{fmt.Errorf("--key %s: %w", kf, err)}
				}
				for _, line := range strings.Split(string(data), "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						na.Keys = append(na.Keys, line)
					}
				}
			}
			na.Allow, _ = f.GetStringSlice("allow")
			na.Permissions, _ = f.GetStringSlice("permissions")
			na.QuotaBytes, _ = f.GetInt64("quota-bytes")
			na.MaxFileBytes, _ = f.GetInt64("max-file-bytes")
			na.DoneMarker, _ = f.GetBool("done-marker")
			na.Import.Mode, _ = f.GetString("mode")
			na.Import.IgnoreUnknownColumns, _ = f.GetBool("ignore-unknown-columns")
			na.Import.DefaultCallingCode, _ = f.GetString("default-calling-code")
			na.Import.Lists, _ = f.GetStringSlice("lists")
			maps, _ := f.GetStringSlice("map")
			for _, m := range maps {
				col, target, ok := strings.Cut(m, "=")
				if !ok || col == "" || target == "" {
					return usageError{fmt.Errorf("--map %q: use COLUMN=TARGET, e.g. Mail=email", m)}
				}
				if na.Import.Mapping == nil {
					na.Import.Mapping = map[string]string{}
				}
				na.Import.Mapping[col] = target
			}
			if exp, _ := f.GetString("expires"); exp != "" {
				t, err := parseExpiry(exp, time.Now())
				if err != nil {
					return usageError{fmt.Errorf("--expires %q: %w", exp, err)}
				}
				na.ExpiresAt = &t
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				a, err := tc.a.SFTP.AddAccount(tc.ctx, tc.t.ID, na)
				var ie *sftpd.InvalidError
				switch {
				case errors.As(err, &ie):
					return usageError{fmt.Errorf("sftp account not added: %s", ie.Error())}
				case errors.Is(err, sftpd.ErrNameTaken):
					return fmt.Errorf("%w: choose another --name (%s)", err, tc.see("sftp account list"))
				case err != nil:
					return err
				}
				if asJSON {
					return printJSON(c.stdout, a)
				}
				fmt.Fprintf(c.stdout, "sftp account %s added: log in as %s.%s (%s)\n", a.Name, tc.t.Slug, a.Name, a.ID)
				for _, k := range a.Keys {
					fmt.Fprintf(c.stdout, "  key %s %s\n", k.Algorithm, k.Fingerprint)
				}
				fmt.Fprintf(c.stdout, "  allowed from %s; permissions %s\n", strings.Join(a.Allow, ", "), strings.Join(a.Permissions, ", "))
				return nil
			})
		},
	}
	af := add.Flags()
	af.String("tenant", "", "tenant slug or id")
	af.String("name", "", "account name (lower-case letters, digits, _ or -)")
	af.StringSlice("key", nil, "SSH public key file (authorized_keys lines); repeatable")
	af.StringSlice("allow", nil, "allowed source networks, CIDR[,CIDR]")
	af.StringSlice("permissions", nil, "upload and/or download (default both)")
	af.String("expires", "", "expiry: a date (2027-01-31), an RFC 3339 time, or a duration from now (90d)")
	af.Int64("quota-bytes", 0, "bytes the account's /inbox files may take (default sftp.quota_bytes)")
	af.Int64("max-file-bytes", 0, "largest file (default sftp.max_file_bytes)")
	af.Bool("done-marker", false, "import a file only when <name>.done is uploaded after it")
	af.String("mode", "", "import mode: upsert (default), add or blocklist")
	af.StringSlice("map", nil, "column mapping COLUMN=TARGET (email, phone, first_name, attr.<key>, - to ignore...)")
	af.Bool("ignore-unknown-columns", false, "ignore columns that map to nothing")
	af.String("default-calling-code", "", "calling code for national phone numbers, e.g. 33")
	af.StringSlice("lists", nil, "list ids every imported contact joins")
	af.BoolVar(&asJSON, "json", false, "print JSON")

	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's SFTP accounts with their keys and networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				accts, err := tc.a.SFTP.Accounts(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, accts)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLOGIN\tALLOW\tPERMISSIONS\tKEYS\tEXPIRES")
				for _, a := range accts {
					exp := "never"
					if a.ExpiresAt != nil {
						exp = a.ExpiresAt.Format(time.RFC3339)
					}
					fps := make([]string, 0, len(a.Keys))
					for _, k := range a.Keys {
						fps = append(fps, k.Fingerprint)
					}
					fmt.Fprintf(tw, "%s\t%s.%s\t%s\t%s\t%s\t%s\n", a.Name, tc.t.Slug, a.Name, strings.Join(a.Allow, ","),
						strings.Join(a.Permissions, ","), strings.Join(fps, " "), exp)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().String("tenant", "", "tenant slug or id")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	remove := &cobra.Command{
		Use:   "remove --tenant T --name N",
		Short: "Remove an SFTP account and its keys (its files stay until their retention ends)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "name"); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				a, err := tc.a.SFTP.RemoveAccount(tc.ctx, tc.t.ID, name)
				if errors.Is(err, sftpd.ErrNotFound) {
					return fmt.Errorf("%w: %q (%s)", err, name, tc.see("sftp account list"))
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "sftp account %s removed\n", a.Name)
				return nil
			})
		},
	}
	remove.Flags().String("tenant", "", "tenant slug or id")
	remove.Flags().String("name", "", "account name or id")

	acct.AddCommand(add, list, remove)

	files := &cobra.Command{
		Use:   "files --tenant T [--dir inbox|outbox]",
		Short: "List the files of a tenant's /inbox or /outbox",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			dir, _ := cmd.Flags().GetString("dir")
			if dir != sftpd.DirInbox && dir != sftpd.DirOutbox {
				return usageError{fmt.Errorf("--dir %q: use inbox or outbox", dir)}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				list, err := tc.a.SFTP.Files(tc.ctx, tc.t.ID, dir)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, list)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSIZE\tSTATE\tCREATED\tEXPIRES")
				for _, f := range list {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", f.Name, f.Size, f.State, f.CreatedAt.Format(time.RFC3339), f.ExpiresAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	files.Flags().String("tenant", "", "tenant slug or id")
	files.Flags().String("dir", sftpd.DirOutbox, "inbox or outbox")
	files.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	deliver := &cobra.Command{
		Use:   "deliver --tenant T --file F [--name N]",
		Short: "Put a file in a tenant's /outbox (encrypted with the tenant key, removed after sftp.retention)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "file"); err != nil {
				return err
			}
			path, _ := cmd.Flags().GetString("file")
			name, _ := cmd.Flags().GetString("name")
			if name == "" {
				name = filepath.Base(path)
			}
			if err := sftpd.CheckName(name); err != nil {
				return usageError{fmt.Errorf("--name %q: %w", name, err)}
			}
			f, err := os.Open(path) // #nosec G304 -- a file the operator names
			if err != nil {
				return usageError{fmt.Errorf("--file: %w", err)}
			}
			defer func() { _ = f.Close() }()
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				fi, err := tc.a.SFTP.Deliver(tc.ctx, tc.t.ID, name, f)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "delivered /outbox/%s (%d bytes) to %s, until %s\n", fi.Name, fi.Size, tc.t.Slug, fi.ExpiresAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	deliver.Flags().String("tenant", "", "tenant slug or id")
	deliver.Flags().String("file", "", "the file to deliver")
	deliver.Flags().String("name", "", "its name in /outbox (default: the file's base name)")

	cmd.AddCommand(acct, files, deliver)
	return cmd
}

// parseExpiry reads a date, an RFC 3339 time or a duration from now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d.D() <= 0 {
		return time.Time{}, errors.New("use a date (2027-01-31), an RFC 3339 time or a duration (90d)")
	}
	return now.Add(d.D()), nil
}
