package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/tenants"
)

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ error }

// cli carries the shared flags and streams.
type cli struct {
	configPath string
	dataDir    string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "relais",
		Short: "Relais: a secure, multi-tenant marketing messaging platform",
		Long: `Relais keeps tenants' contacts and consents, sends their email and SMS
campaigns and transactional messages through one router, and makes the
security and GDPR controls of its assurance plan features of the product.

Every command reads the same settings: built-in defaults, then the file
given by --config (or RELAIS_CONFIG), then RELAIS_* environment variables,
then flags. The store is SQLite in --data-dir unless RELAIS_DATABASE_URL
names a PostgreSQL database (kept out of flags so passwords stay out of
process listings).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w; see `%s --help`", err, cmd.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&c.configPath, "config", "", "configuration file (TOML); also RELAIS_CONFIG")
	pf.StringVar(&c.dataDir, "data-dir", "", "data directory (SQLite store, master key, certificates); default ./relais-data, also RELAIS_DATA_DIR")

	root.AddCommand(c.serveCmd(), c.migrateCmd(), c.tenantCmd(), c.configCmd(), c.operatorCmd(), c.versionCmd(), c.userCmd(), c.clientCmd(), c.roleCmd(), c.groupCmd(), c.accessCmd(), c.connectorCmd(), c.routeCmd(), c.auditCmd(), c.contactsCmd(), c.seedCmd(), c.pkiCmd(), c.sftpCmd(), c.ssoCmd(), c.tlsCmd(), c.keysCmd(), c.backupCmd())
	c.addPrivacyCommands(root)
	root.AddCommand(c.monitorCmds()...)
	return root
}

// load builds the effective configuration: file, environment, then the
// flags the user set (given as setting key -> flag name).
func (c *cli) load(cmd *cobra.Command, flagKeys map[string]string) (config.Config, error) {
	cfg, err := app.LoadConfig(c.configPath)
	if err != nil {
		return config.Config{}, err
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	var ferr error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if key, ok := flagKeys[f.Name]; ok && ferr == nil {
			if err := cfg.Set(key, f.Value.String()); err != nil {
				ferr = usageError{fmt.Errorf("--%s: %w", f.Name, err)}
			}
		}
	})
	if ferr != nil {
		return config.Config{}, ferr
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// open loads the configuration and opens the app without migrating; the
// store must already be at the current schema (migrate or serve first)...
// except that commands run on a fresh data directory migrate it, so that
// `relais tenant create` works before the first `relais serve`.
func (c *cli) open(cmd *cobra.Command) (*app.App, error) {
	cfg, err := c.load(cmd, nil)
	if err != nil {
		return nil, err
	}
	log := app.NewLogger(cfg, c.stderr)
	return app.Open(cmd.Context(), cfg, log, true)
}

func (c *cli) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTPS server (UI, API, health) and the metrics listener",
		Long: `Run Relais. With no flags it serves https://127.0.0.1:8443 with a
self-signed ECDSA P-256 certificate created in the data directory (its
SHA-256 fingerprint is printed), stores data in SQLite in ./relais-data,
and exposes Prometheus metrics on http://127.0.0.1:9464/metrics.
Pending schema migrations are applied at start. SIGTERM or Ctrl-C stops it
gracefully: in-flight requests finish first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd, map[string]string{
				"listen": "listen", "metrics-listen": "metrics_listen", "redirect-listen": "redirect_listen",
				"tls-cert": "tls.cert", "tls-key": "tls.key", "sftp-listen": "sftp.listen",
				"acme-domain": "tls.acme_domains", "acme-email": "tls.acme_email", "acme-directory": "tls.acme_directory",
			})
			if err != nil {
				return err
			}
			log := app.NewLogger(cfg, c.stderr)
			front, err := app.PrepareFront(cmd.Context(), cfg, log, time.Now)
			if err != nil {
				return err
			}
			a, err := app.Open(cmd.Context(), cfg, log, true)
			if err != nil {
				front.Close()
				return err
			}
			defer a.Close()
			return a.Serve(cmd.Context(), front, app.ServeOptions{Version: buildVersion(), Out: c.stdout})
		},
	}
	f := cmd.Flags()
	f.String("listen", "", "HTTPS address (default 127.0.0.1:8443; RELAIS_LISTEN)")
	f.String("metrics-listen", "", "Prometheus metrics address, plain HTTP (default 127.0.0.1:9464; empty string disables)")
	f.String("redirect-listen", "", "optional plain-HTTP address that only redirects to HTTPS (e.g. :80)")
	f.String("tls-cert", "", "TLS certificate chain (PEM); omit with --tls-key for a self-signed certificate")
	f.String("tls-key", "", "TLS private key (PEM)")
	f.String("sftp-listen", "", "SFTP address (default 127.0.0.1:2222; empty string disables)")
	f.String("acme-domain", "", "obtain and renew the certificate from an ACME CA for these names (comma-separated; the CA must reach this server on port 443)")
	f.String("acme-email", "", "contact address of the ACME account")
	f.String("acme-directory", "", "ACME directory URL (default Let's Encrypt)")
	return cmd
}

func (c *cli) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending schema migrations to the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd, nil)
			if err != nil {
				return err
			}
			a, err := app.Open(cmd.Context(), cfg, app.NewLogger(cfg, c.stderr), true)
			if err != nil {
				return err
			}
			defer a.Close()
			cur, _, err := a.DB.SchemaStatus(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "store (%s) at schema version %d\n", app.Describe(cfg), cur)
			return nil
		},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create, list, show, disable and enable tenants"}
	var asJSON bool

	create := &cobra.Command{
		Use:   "create --name NAME --slug SLUG [--admin-email E [--admin-name N] [--admin-password-stdin]]",
		Short: "Create a tenant with its own data key, and its first administrator",
		Long: `Create a tenant with its own data key and built-in roles. With
--admin-email, also create its first administrator (role admin): a one-time
enrolment secret is printed (POST /api/v1/auth/enrol, or the /enrol page),
or, with --admin-password-stdin, the initial password is read from standard
input (at least 20 characters: an administrator is a privileged account; it
must be changed at first sign-in). The administrator's email, name and
password are checked before the tenant is created.`,
		Example: `  relais tenant create --name "Acme" --slug acme --admin-email it@acme.example
  relais tenant create --name "Acme" --slug acme --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			slug, _ := cmd.Flags().GetString("slug")
			if name == "" || slug == "" {
				return usageError{fmt.Errorf("--name and --slug are required; see `relais tenant create --help`")}
			}
			admin, err := c.prepareAdmin(cmd)
			if err != nil {
				return err
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := admin.check(cmd.Context(), a); err != nil {
				return err
			}
			t, err := a.Tenants.Create(cmd.Context(), name, slug)
			if err != nil {
				return tenantErr(err)
			}
			var created *createdUser
			if admin != nil {
				u, err := c.createAdmin(cmd.Context(), a, t, admin)
				if err != nil {
					return err
				}
				created = &u
			}
			if asJSON {
				return printJSON(c.stdout, struct {
					tenants.Tenant
					Admin *createdUser `json:"admin,omitempty"`
				}{t, created})
			}
			fmt.Fprintf(c.stdout, "created tenant %s (%s)\nid:     %s\nstatus: %s\n", t.Slug, t.Name, t.ID, t.Status)
			if created != nil {
				fmt.Fprintln(c.stdout)
				printCreatedUser(c.stdout, t.Slug, *created)
			}
			return nil
		},
	}
	create.Flags().String("name", "", "display name (1 to 200 characters)")
	create.Flags().String("slug", "", "short identifier: 2 to 63 lower-case letters, digits or hyphens")
	create.Flags().String("admin-email", "", "create the tenant's first administrator (role admin) with this email")
	create.Flags().String("admin-name", "", "the administrator's display name")
	create.Flags().Bool("admin-password-stdin", false, "read the administrator's initial password from standard input instead of printing an enrolment secret")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			ts, err := a.Tenants.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if ts == nil {
					ts = []tenants.Tenant{}
				}
				return printJSON(c.stdout, ts)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SLUG\tNAME\tSTATUS\tCREATED\tID")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Slug, t.Name, t.Status, t.CreatedAt.Format(time.RFC3339), t.ID)
			}
			return tw.Flush()
		},
	}

	show := &cobra.Command{
		Use:   "show SLUG|ID",
		Short: "Show a tenant and its effective security policy",
		Args:  exactArgs(1, "give the tenant's slug or id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			t, err := a.Tenants.Get(cmd.Context(), args[0])
			if err != nil {
				return tenantErr(err)
			}
			pol, err := a.Tenants.Policy(cmd.Context(), t.ID)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, map[string]any{"tenant": t, "policy": pol})
			}
			fmt.Fprintf(c.stdout, "tenant %s (%s)\nid:      %s\nstatus:  %s\ncreated: %s\npolicy:\n", t.Slug, t.Name, t.ID, t.Status, t.CreatedAt.Format(time.RFC3339))
			return printJSON(c.stdout, pol)
		},
	}

	status := func(use, short, st string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " SLUG|ID",
			Short: short,
			Args:  exactArgs(1, "give the tenant's slug or id"),
			RunE: func(cmd *cobra.Command, args []string) error {
				a, err := c.open(cmd)
				if err != nil {
					return err
				}
				defer a.Close()
				t, err := a.Tenants.SetStatus(cmd.Context(), args[0], st)
				if err != nil {
					return tenantErr(err)
				}
				if asJSON {
					return printJSON(c.stdout, t)
				}
				fmt.Fprintf(c.stdout, "tenant %s is %s\n", t.Slug, t.Status)
				return nil
			},
		}
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.AddCommand(create, list, show,
		status("disable", "Disable a tenant (its data is kept)", tenants.StatusDisabled),
		status("enable", "Enable a disabled tenant", tenants.StatusActive), c.tenantDestroyKeysCmd())
	return cmd
}

func exactArgs(n int, hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), n, len(args), hint)}
		}
		return nil
	}
}

// tenantErr turns domain errors into what-to-do messages.
func tenantErr(err error) error {
	switch {
	case errors.Is(err, tenants.ErrSlugTaken):
		return fmt.Errorf("%w: choose another --slug (see `relais tenant list`)", err)
	case errors.Is(err, tenants.ErrNotFound):
		return fmt.Errorf("%w (see `relais tenant list`)", err)
	}
	return err
}

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the effective configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective settings as TOML, secrets masked",
		Long: `Print the effective settings (defaults, file, environment and flags
merged) as a TOML document that --config accepts. Passwords in URLs are
masked. Each key can also be set with an environment variable: the key in
upper case with dots as underscores, prefixed RELAIS_ (for example
policy.password.min_length is RELAIS_POLICY_PASSWORD_MIN_LENGTH).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd, nil)
			if err != nil {
				return err
			}
			out, err := cfg.Masked().TOML()
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.stdout, out)
			return err
		},
	})
	return cmd
}

func (c *cli) operatorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Operator API tokens (for /api/v1/tenants)"}
	tok := &cobra.Command{Use: "token", Short: "Create, list and revoke operator API tokens"}
	var asJSON bool
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an operator token; the secret is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			if name == "" {
				return usageError{fmt.Errorf("--name is required; see `relais operator token create --help`")}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			t, secret, err := optoken.Create(cmd.Context(), a.DB, name)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, map[string]any{"id": t.ID, "name": t.Name, "token": secret})
			}
			fmt.Fprintf(c.stdout, "operator token %s (%s)\n%s\nkeep it now: it is not shown again\n", t.Name, t.ID, secret)
			return nil
		},
	}
	create.Flags().String("name", "", "what the token is for")
	list := &cobra.Command{
		Use: "list", Short: "List operator tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			ts, err := optoken.List(cmd.Context(), a.DB)
			if err != nil {
				return err
			}
			if asJSON {
				if ts == nil {
					ts = []optoken.Token{}
				}
				return printJSON(c.stdout, ts)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED\tREVOKED")
			for _, t := range ts {
				rev := "-"
				if t.RevokedAt != nil {
					rev = t.RevokedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339), rev)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an operator token at once", Args: exactArgs(1, "give the token id from `relais operator token list`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := optoken.Revoke(cmd.Context(), a.DB, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "revoked %s\n", args[0])
			return nil
		},
	}
	tok.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	tok.AddCommand(create, list, revoke)
	cmd.AddCommand(tok)
	return cmd
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(c.stdout, "relais %s\n", buildVersion())
		},
	}
}
