package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/router"
)

// connectorCmd is `relais connector add|list` and `relais route set`.
func (c *cli) connectorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "connector", Short: "Add and list a tenant's connectors (SMTP relay, SMS operator API, webhook)"}
	var tenant string
	var asJSON bool
	add := &cobra.Command{
		Use:   "add --tenant T --name N --type smtp|sms-http|webhook ...",
		Short: "Add a connector; secrets are stored encrypted and never shown back in full",
		Long: `Add a connector to a tenant. The first connector of a channel becomes its
route; change routes with ` + "`relais route set`" + `.

smtp:     --host H --port P [--tls starttls|implicit|none] [--user U --password-stdin] [--from ADDR]
          (--tls none only to a loopback host)
sms-http: --url URL --config-file F (the JSON mapping: fields, response_id_path, token...)
webhook:  --url URL --channel email|sms --secret-stdin
Any type: --config-file F gives the whole JSON configuration instead of flags.`,
		Example: `  relais connector add --tenant acme --name mail --type smtp --host smtp.example.net --port 587 --user relais --password-stdin
  relais connector add --tenant acme --name hook --type webhook --url https://hooks.example.net/relais --channel sms --secret-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			name, _ := f.GetString("name")
			kind, _ := f.GetString("type")
			if tenant == "" || name == "" || kind == "" {
				return usageError{errors.New("--tenant, --name and --type are required; see `relais connector add --help`")}
			}
			known := false
			for _, k := range registry.Types() {
				known = known || k == kind
			}
			if !known {
				return usageError{fmt.Errorf("--type %q: use one of %s", kind, strings.Join(registry.Types(), ", "))}
			}
			raw, err := c.connectorConfig(cmd, kind)
			if err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				info, err := tc.a.Connectors.AddConnector(tc.ctx, tc.t.ID, name, kind, raw)
				if err != nil {
					var ve *router.ValidationError
					if errors.As(err, &ve) {
						return fmt.Errorf("connector not added: %s", ve.Error())
					}
					return err
				}
				if asJSON {
					return printJSON(c.stdout, info)
				}
				fmt.Fprintf(c.stdout, "connector %s (%s, %s) added: %s\n", info.Name, info.Kind, info.Channel, info.ID)
				return nil
			})
		},
	}
	af := add.Flags()
	af.String("name", "", "connector name, unique in the tenant")
	af.String("type", "", "smtp, sms-http or webhook")
	af.String("config-file", "", "JSON configuration file (instead of the flags below)")
	af.String("host", "", "smtp: relay host")
	af.Int("port", 587, "smtp: relay port")
	af.String("tls", "starttls", "smtp: starttls, implicit or none (none: loopback only)")
	af.String("user", "", "smtp: AUTH user")
	af.Bool("password-stdin", false, "smtp: read the AUTH password from standard input")
	af.String("from", "", "default sender address")
	af.String("url", "", "sms-http and webhook: endpoint URL (https)")
	af.String("channel", "", "webhook: email or sms")
	af.Bool("secret-stdin", false, "webhook: read the signing secret from standard input")

	list := &cobra.Command{
		Use: "list --tenant T", Short: "List a tenant's connectors (secrets masked)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return usageError{errors.New("--tenant is required")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				list, err := tc.a.Connectors.ListConnectors(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []router.ConnectorInfo{}
					}
					return printJSON(c.stdout, list)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tTYPE\tCHANNEL\tSTATUS\tCREATED\tID\tCONFIG")
				for _, i := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.Kind, i.Channel, i.Status, i.CreatedAt.Format(time.RFC3339), i.ID, string(i.Config))
				}
				return tw.Flush()
			})
		},
	}
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "", "tenant slug or id")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.AddCommand(add, list)
	return cmd
}

func (c *cli) connectorConfig(cmd *cobra.Command, kind string) (json.RawMessage, error) {
	f := cmd.Flags()
	if path, _ := f.GetString("config-file"); path != "" {
		b, err := os.ReadFile(path) // #nosec G304 -- the operator names the configuration file
		if err != nil {
			return nil, fmt.Errorf("--config-file: %w", err)
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("--config-file %s is not valid JSON", path)
		}
		return b, nil
	}
	readSecret := func(flag string) (string, error) {
		if on, _ := f.GetBool(flag); !on {
			return "", nil
		}
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", usageError{fmt.Errorf("--%s: nothing on standard input", flag)}
		}
		if err != nil && line == "" {
			return "", err
		}
		return line, nil
	}
	cfg := map[string]any{}
	if from, _ := f.GetString("from"); from != "" {
		cfg["from"] = from
	}
	switch kind {
	case "smtp":
		host, _ := f.GetString("host")
		if host == "" {
			return nil, usageError{errors.New("smtp needs --host (or --config-file)")}
		}
		port, _ := f.GetInt("port")
		tlsMode, _ := f.GetString("tls")
		cfg["host"], cfg["port"], cfg["tls"] = host, port, tlsMode
		if u, _ := f.GetString("user"); u != "" {
			cfg["username"] = u
			pw, err := readSecret("password-stdin")
			if err != nil {
				return nil, err
			}
			if pw == "" {
				return nil, usageError{errors.New("--user needs --password-stdin (the password is never a flag)")}
			}
			cfg["password"] = pw
		}
	case "webhook":
		url, _ := f.GetString("url")
		ch, _ := f.GetString("channel")
		sec, err := readSecret("secret-stdin")
		if err != nil {
			return nil, err
		}
		if url == "" || ch == "" || sec == "" {
			return nil, usageError{errors.New("webhook needs --url, --channel and --secret-stdin (or --config-file)")}
		}
		cfg["url"], cfg["channel"], cfg["secret"] = url, ch, sec
	default:
		return nil, usageError{fmt.Errorf("%s needs --config-file with its JSON mapping; see docs/operations.md", kind)}
	}
	return json.Marshal(cfg)
}

// routeCmd is `relais route set`.
func (c *cli) routeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "Choose the connectors of a channel"}
	set := &cobra.Command{
		Use:   "set --tenant T --channel email|sms --primary NAME [--secondary NAME]",
		Short: "Route a channel to a primary connector, with an optional secondary used after failures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			tenant, _ := f.GetString("tenant")
			channel, _ := f.GetString("channel")
			primary, _ := f.GetString("primary")
			secondary, _ := f.GetString("secondary")
			if tenant == "" || channel == "" || primary == "" {
				return usageError{errors.New("--tenant, --channel and --primary are required")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if err := tc.a.Connectors.SetRoute(tc.ctx, tc.t.ID, channel, primary, secondary); err != nil {
					return fmt.Errorf("route not set: %w (%s)", err, tc.see("connector list"))
				}
				fmt.Fprintf(c.stdout, "%s of %s goes to %s", channel, tc.t.Slug, primary)
				if secondary != "" {
					fmt.Fprintf(c.stdout, ", then %s", secondary)
				}
				fmt.Fprintln(c.stdout)
				return nil
			})
		},
	}
	set.Flags().String("tenant", "", "tenant slug or id")
	set.Flags().String("channel", "", "email or sms")
	set.Flags().String("primary", "", "connector name or id")
	set.Flags().String("secondary", "", "connector used after a failure of the primary")
	cmd.AddCommand(set)
	return cmd
}
