package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/sso"
)

// ssoCmd is `relais sso ...`: a tenant's identity providers (OIDC, SAML),
// their mapping rules, the password sign-in switch and SCIM tokens.
func (c *cli) ssoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sso", Short: "Configure a tenant's single sign-on: identity providers, mapping rules, SCIM tokens",
		Long: `Single sign-on (AUTH-5): users of a tenant sign in through the tenant's own
OpenID Connect or SAML 2.0 identity provider at /sso/<tenant>/<provider>/login.
Mapping rules give relais groups and roles from the provider's claims or
attributes at every sign-in (ACC-2); SCIM tokens let the provider create and
deactivate users (ACC-5).`}
	var tenant string
	var asJSON bool
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "", "tenant slug or id")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	needTenant := func() error {
		if tenant == "" {
			return usageError{errors.New("--tenant is required")}
		}
		return nil
	}
	ssoErr := func(err error) error {
		var ve *sso.ValidationError
		switch {
		case errors.As(err, &ve):
			return fmt.Errorf("--%s: %s", strings.ReplaceAll(ve.Field, "_", "-"), ve.Message)
		case errors.Is(err, sso.ErrNotFound):
			return fmt.Errorf("%v; see `relais sso provider list --tenant %s`", err, tenant)
		case errors.Is(err, sso.ErrConflict):
			return fmt.Errorf("%v; choose another --name", err)
		}
		return err
	}

	provider := &cobra.Command{Use: "provider", Short: "Add, list, show, enable, disable and delete identity providers"}
	add := &cobra.Command{
		Use:   "add --tenant T --name N --kind oidc|saml --base-url https://relais.example ...",
		Short: "Add an OpenID Connect or SAML 2.0 identity provider to a tenant",
		Long: `Add an identity provider. --base-url is Relais's public https address as
browsers see it; the redirect URI (OIDC) or the SP metadata URL (SAML) to
register at the provider are printed.

oidc: --issuer URL --client-id ID [--client-secret-stdin] [--scopes openid,email,profile,groups]
      [--algorithms RS256,ES256] [--userinfo]
saml: --idp-metadata-url URL | --idp-metadata-file F  [--allow-idp-initiated] [--clock-skew 60s]
Both: [--jit] [--accept-idp-mfa] [--email-claim] [--name-claim] [--groups-claim]`,
		Example: `  relais sso provider add --tenant acme --name corp --kind oidc --base-url https://relais.example \
      --issuer https://login.example.com --client-id relais --client-secret-stdin --jit
  relais sso provider add --tenant acme --name adfs --kind saml --base-url https://relais.example \
      --idp-metadata-url https://adfs.example.com/FederationMetadata/2007-06/FederationMetadata.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			name, _ := f.GetString("name")
			kind, _ := f.GetString("kind")
			if err := needTenant(); err != nil {
				return err
			}
			if name == "" || kind == "" {
				return usageError{errors.New("--name and --kind are required; see `relais sso provider add --help`")}
			}
			if kind != sso.KindOIDC && kind != sso.KindSAML {
				return usageError{fmt.Errorf("--kind %q: use oidc or saml", kind)}
			}
			var cfg sso.Config
			cfg.BaseURL, _ = f.GetString("base-url")
			cfg.Issuer, _ = f.GetString("issuer")
			cfg.ClientID, _ = f.GetString("client-id")
			cfg.Scopes, _ = f.GetStringSlice("scopes")
			cfg.Algorithms, _ = f.GetStringSlice("algorithms")
			cfg.Userinfo, _ = f.GetBool("userinfo")
			cfg.IdPMetadataURL, _ = f.GetString("idp-metadata-url")
			cfg.AllowIdPInitiated, _ = f.GetBool("allow-idp-initiated")
			skew, _ := f.GetDuration("clock-skew")
			cfg.ClockSkewSeconds = int(skew / time.Second)
			cfg.EmailClaim, _ = f.GetString("email-claim")
			cfg.NameClaim, _ = f.GetString("name-claim")
			cfg.GroupsClaim, _ = f.GetString("groups-claim")
			cfg.JIT, _ = f.GetBool("jit")
			cfg.AcceptIdPMFA, _ = f.GetBool("accept-idp-mfa")
			cfg.MFAValues, _ = f.GetStringSlice("mfa-values")
			allowHTTP, _ := f.GetBool("allow-http")
			var secret string
			if on, _ := f.GetBool("client-secret-stdin"); on {
				line, err := bufio.NewReader(c.stdin).ReadString('\n')
				if err != nil && line == "" {
					return usageError{errors.New("--client-secret-stdin: nothing on standard input")}
				}
				secret = strings.TrimRight(line, "\r\n")
			}
			mdFile, _ := f.GetString("idp-metadata-file")
			if kind == sso.KindSAML && (mdFile == "") == (cfg.IdPMetadataURL == "") {
				return usageError{errors.New("a SAML provider needs exactly one of --idp-metadata-url and --idp-metadata-file")}
			}
			if mdFile != "" {
				b, err := os.ReadFile(mdFile) // #nosec G304 -- the operator names the file
				if err != nil {
					return fmt.Errorf("--idp-metadata-file: %w", err)
				}
				cfg.IdPMetadata = string(b)
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if cfg.IdPMetadataURL != "" {
					var err error
					if cfg.IdPMetadata, err = tc.a.SSO.FetchMetadata(tc.ctx, cfg.IdPMetadataURL, allowHTTP); err != nil {
						return ssoErr(fmt.Errorf("--idp-metadata-url: %w", err))
					}
				}
				p, err := tc.a.SSO.CreateProvider(tc.ctx, tc.t.ID, sso.NewProvider{Name: name, Kind: kind, Config: cfg, ClientSecret: secret}, sso.AllowHTTP(allowHTTP))
				if err != nil {
					return ssoErr(err)
				}
				return printProvider(c, tc.t.Slug, p, asJSON)
			})
		},
	}
	af := add.Flags()
	af.String("name", "", "provider name, unique in the tenant (a-z, 0-9, '-'; it appears in URLs)")
	af.String("kind", "", "oidc or saml")
	af.String("base-url", "", "Relais's public https address as browsers see it")
	af.String("issuer", "", "oidc: the issuer URL (discovery at <issuer>/.well-known/openid-configuration)")
	af.String("client-id", "", "oidc: client id registered at the provider")
	af.Bool("client-secret-stdin", false, "oidc: read the client secret from standard input (stored encrypted)")
	af.StringSlice("scopes", nil, "oidc: scopes (default openid,email,profile,groups)")
	af.StringSlice("algorithms", nil, "oidc: accepted ID token algorithms (default RS256,ES256)")
	af.Bool("userinfo", false, "oidc: also read the userinfo endpoint")
	af.String("idp-metadata-url", "", "saml: fetch the IdP metadata from this https URL")
	af.String("idp-metadata-file", "", "saml: read the IdP metadata from this file")
	af.Bool("allow-idp-initiated", false, "saml: accept IdP-initiated (unsolicited) sign-in")
	af.Duration("clock-skew", 60*time.Second, "saml: largest accepted clock difference with the IdP (at most 3m)")
	af.String("email-claim", "", "claim or attribute holding the email (default email / mail)")
	af.String("name-claim", "", "claim or attribute holding the display name (default name / cn)")
	af.String("groups-claim", "", "claim or attribute holding the groups (default groups / eduPersonAffiliation)")
	af.Bool("jit", false, "create the account of an unknown person at first sign-in")
	af.Bool("accept-idp-mfa", false, "do not ask the tenant's own second factor when the IdP asserts MFA (amr/acr, AuthnContext)")
	af.StringSlice("mfa-values", nil, "amr / acr / AuthnContextClassRef values that mean MFA (default: mfa and the usual MFA classes)")
	af.Bool("allow-http", false, "accept http:// URLs (development and tests only)")

	list := &cobra.Command{Use: "list --tenant T", Short: "List a tenant's identity providers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				ps, err := tc.a.SSO.ListProviders(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					if ps == nil {
						ps = []sso.Provider{}
					}
					for i := range ps {
						ps[i].Config.IdPMetadata = ""
					}
					return printJSON(c.stdout, ps)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tENABLED\tJIT\tIDP MFA\tISSUER / METADATA\tID")
				for _, p := range ps {
					src := p.Config.Issuer
					if p.Kind == sso.KindSAML {
						src = p.Config.IdPMetadataURL
					}
					fmt.Fprintf(tw, "%s\t%s\t%t\t%t\t%t\t%s\t%s\n", p.Name, p.Kind, p.Enabled, p.Config.JIT, p.Config.AcceptIdPMFA, src, p.ID)
				}
				return tw.Flush()
			})
		},
	}
	show := &cobra.Command{Use: "show --tenant T NAME", Short: "Show a provider and the URLs to register at the identity provider",
		Args: exactArgs(1, "the provider's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				p, err := tc.a.SSO.GetProvider(tc.ctx, tc.t.ID, args[0])
				if err != nil {
					return ssoErr(err)
				}
				return printProvider(c, tc.t.Slug, p, asJSON)
			})
		},
	}
	setEnabled := func(use string, on bool) *cobra.Command {
		return &cobra.Command{Use: use + " --tenant T NAME", Short: map[bool]string{true: "Enable", false: "Disable"}[on] + " a provider",
			Args: exactArgs(1, "the provider's name"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := needTenant(); err != nil {
					return err
				}
				return c.inTenant(cmd, func(tc *tenantCtx) error {
					if err := tc.a.SSO.SetProviderEnabled(tc.ctx, tc.t.ID, args[0], on); err != nil {
						return ssoErr(err)
					}
					fmt.Fprintf(c.stdout, "provider %s %sd\n", args[0], use)
					return nil
				})
			}}
	}
	del := &cobra.Command{Use: "delete --tenant T NAME", Short: "Delete a provider, its rules and its subject links",
		Args: exactArgs(1, "the provider's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if err := tc.a.SSO.DeleteProvider(tc.ctx, tc.t.ID, args[0]); err != nil {
					return ssoErr(err)
				}
				fmt.Fprintf(c.stdout, "provider %s deleted\n", args[0])
				return nil
			})
		}}
	set := &cobra.Command{
		Use:   "set --tenant T NAME [--jit=true|false] [--accept-idp-mfa=...] [--allow-idp-initiated=...] [--refresh-metadata]",
		Short: "Change a provider's switches, or fetch its SAML IdP metadata again from its URL",
		Args:  exactArgs(1, "the provider's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			f := cmd.Flags()
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				p, err := tc.a.SSO.GetProvider(tc.ctx, tc.t.ID, args[0])
				if err != nil {
					return ssoErr(err)
				}
				cfg := p.Config
				for flag, dst := range map[string]*bool{"jit": &cfg.JIT, "accept-idp-mfa": &cfg.AcceptIdPMFA, "allow-idp-initiated": &cfg.AllowIdPInitiated, "userinfo": &cfg.Userinfo} {
					if f.Changed(flag) {
						*dst, _ = f.GetBool(flag)
					}
				}
				allowHTTP, _ := f.GetBool("allow-http")
				if refresh, _ := f.GetBool("refresh-metadata"); refresh {
					if p.Kind != sso.KindSAML || cfg.IdPMetadataURL == "" {
						return usageError{errors.New("--refresh-metadata needs a SAML provider added with --idp-metadata-url")}
					}
					if cfg.IdPMetadata, err = tc.a.SSO.FetchMetadata(tc.ctx, cfg.IdPMetadataURL, allowHTTP); err != nil {
						return ssoErr(fmt.Errorf("--refresh-metadata: %w", err))
					}
				}
				if p, err = tc.a.SSO.UpdateConfig(tc.ctx, tc.t.ID, args[0], cfg, sso.AllowHTTP(allowHTTP)); err != nil {
					return ssoErr(err)
				}
				return printProvider(c, tc.t.Slug, p, asJSON)
			})
		},
	}
	sf := set.Flags()
	sf.Bool("jit", false, "create the account of an unknown person at first sign-in")
	sf.Bool("accept-idp-mfa", false, "accept the IdP's multi-factor authentication instead of the tenant's own second factor")
	sf.Bool("allow-idp-initiated", false, "saml: accept IdP-initiated sign-in")
	sf.Bool("userinfo", false, "oidc: also read the userinfo endpoint")
	sf.Bool("refresh-metadata", false, "saml: fetch the IdP metadata again from its URL")
	sf.Bool("allow-http", false, "accept http:// URLs (development and tests only)")
	provider.AddCommand(add, list, show, set, setEnabled("enable", true), setEnabled("disable", false), del)

	rule := &cobra.Command{Use: "rule", Short: "Map identity provider claims or attributes to relais groups and roles"}
	ruleAdd := &cobra.Command{
		Use:   "add --tenant T --provider P --claim C --value V [--group G] [--role R]",
		Short: "Add a mapping rule, applied at every sign-in (value * matches any)",
		Example: `  relais sso rule add --tenant acme --provider corp --claim groups --value marketing --group Marketing
  relais sso rule add --tenant acme --provider adfs --claim eduPersonAffiliation --value admins --role admin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var nr sso.NewRule
			nr.Provider, _ = f.GetString("provider")
			nr.Claim, _ = f.GetString("claim")
			nr.Value, _ = f.GetString("value")
			nr.Group, _ = f.GetString("group")
			nr.Role, _ = f.GetString("role")
			if err := needTenant(); err != nil {
				return err
			}
			if nr.Provider == "" || nr.Claim == "" || nr.Value == "" || (nr.Group == "" && nr.Role == "") {
				return usageError{errors.New("--provider, --claim, --value and at least one of --group and --role are required")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				r, err := tc.a.SSO.AddRule(tc.ctx, tc.t.ID, nr)
				if err != nil {
					return ssoErr(err)
				}
				if asJSON {
					return printJSON(c.stdout, r)
				}
				fmt.Fprintf(c.stdout, "rule %s added: %s = %q gives group %q, role %q\n", r.ID, r.Claim, r.Value, r.GroupName, r.RoleName)
				return nil
			})
		},
	}
	rf := ruleAdd.Flags()
	rf.String("provider", "", "provider name")
	rf.String("claim", "", "claim (OIDC) or attribute (SAML Name or FriendlyName)")
	rf.String("value", "", "value to match; * matches any value")
	rf.String("group", "", "relais group to join (name or id)")
	rf.String("role", "", "relais role to hold (name or id)")
	ruleList := &cobra.Command{Use: "list --tenant T [--provider P]", Short: "List mapping rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			prov, _ := cmd.Flags().GetString("provider")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				rules, err := tc.a.SSO.ListRules(tc.ctx, tc.t.ID, prov)
				if err != nil {
					return ssoErr(err)
				}
				if asJSON {
					if rules == nil {
						rules = []sso.Rule{}
					}
					return printJSON(c.stdout, rules)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCLAIM\tVALUE\tGROUP\tROLE")
				for _, r := range rules {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Claim, r.Value, r.GroupName, r.RoleName)
				}
				return tw.Flush()
			})
		}}
	ruleList.Flags().String("provider", "", "only this provider's rules")
	ruleDel := &cobra.Command{Use: "delete --tenant T ID", Short: "Delete a mapping rule (what it gave is taken away at the next sign-in)",
		Args: exactArgs(1, "the rule's id (see `relais sso rule list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if err := tc.a.SSO.DeleteRule(tc.ctx, tc.t.ID, args[0]); err != nil {
					return ssoErr(err)
				}
				fmt.Fprintf(c.stdout, "rule %s deleted\n", args[0])
				return nil
			})
		}}
	rule.AddCommand(ruleAdd, ruleList, ruleDel)

	pwLogin := &cobra.Command{Use: "password-login on|off --tenant T", Short: "Allow or refuse local passwords in a tenant (off needs an enabled provider)",
		Args: exactArgs(1, "on or off"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			if args[0] != "on" && args[0] != "off" {
				return usageError{fmt.Errorf("%q: say on or off", args[0])}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if err := tc.a.SSO.SetPasswordLogin(tc.ctx, tc.t.ID, args[0] == "on"); err != nil {
					var ve *sso.ValidationError
					if errors.As(err, &ve) {
						return fmt.Errorf("%s; see `relais sso provider add --help`", ve.Message)
					}
					return err
				}
				fmt.Fprintf(c.stdout, "password sign-in %s for %s\n", args[0], tc.t.Slug)
				return nil
			})
		}}

	scim := &cobra.Command{Use: "scim-token", Short: "Create, list and revoke a tenant's SCIM 2.0 provisioning tokens"}
	scimCreate := &cobra.Command{Use: "create --tenant T --name N", Short: "Create a SCIM bearer token (shown once)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			if err := needTenant(); err != nil {
				return err
			}
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				tok, secret, err := tc.a.SSO.CreateSCIMToken(tc.ctx, tc.t.ID, name)
				if err != nil {
					return ssoErr(err)
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"id": tok.ID, "name": tok.Name, "token": secret, "endpoint": "/scim/v2"})
				}
				fmt.Fprintf(c.stdout, "SCIM token %s (%s), shown once; give it to the identity provider with the base URL https://<relais>/scim/v2:\n%s\n", tok.ID, tok.Name, secret)
				return nil
			})
		}}
	scimCreate.Flags().String("name", "", "what the token is for (the identity provider)")
	scimList := &cobra.Command{Use: "list --tenant T", Short: "List SCIM tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				toks, err := tc.a.SSO.ListSCIMTokens(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					if toks == nil {
						toks = []sso.SCIMToken{}
					}
					return printJSON(c.stdout, toks)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tCREATED\tREVOKED")
				for _, t := range toks {
					rev := "-"
					if t.RevokedAt != nil {
						rev = t.RevokedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339), rev)
				}
				return tw.Flush()
			})
		}}
	scimRevoke := &cobra.Command{Use: "revoke --tenant T ID", Short: "Revoke a SCIM token at once", Args: exactArgs(1, "the token's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needTenant(); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				if err := tc.a.SSO.RevokeSCIMToken(tc.ctx, tc.t.ID, args[0]); err != nil {
					return fmt.Errorf("%v; see `relais sso scim-token list --tenant %s`", err, tenant)
				}
				fmt.Fprintf(c.stdout, "SCIM token %s revoked\n", args[0])
				return nil
			})
		}}
	scim.AddCommand(scimCreate, scimList, scimRevoke)

	cmd.AddCommand(provider, rule, pwLogin, scim)
	return cmd
}

// printProvider prints a provider with what to register at the IdP.
func printProvider(c *cli, slug string, p sso.Provider, asJSON bool) error {
	login := p.Config.BaseURL + "/sso/" + slug + "/" + p.Name + "/login"
	if asJSON {
		p.Config.IdPMetadata = ""
		out := map[string]any{"provider": p, "login_url": login}
		if p.Kind == sso.KindOIDC {
			out["redirect_uri"] = sso.CallbackURL(p.Config.BaseURL, slug, p.Name)
		} else {
			out["sp_metadata_url"] = sso.SAMLURL(p.Config.BaseURL, slug, p.Name) + "/metadata"
			out["acs_url"] = sso.SAMLURL(p.Config.BaseURL, slug, p.Name) + "/acs"
		}
		return printJSON(c.stdout, out)
	}
	fmt.Fprintf(c.stdout, "provider %s (%s) %s, enabled=%t, jit=%t, accept_idp_mfa=%t\n", p.Name, p.Kind, p.ID, p.Enabled, p.Config.JIT, p.Config.AcceptIdPMFA)
	fmt.Fprintf(c.stdout, "sign-in URL:   %s\n", login)
	if p.Kind == sso.KindOIDC {
		fmt.Fprintf(c.stdout, "redirect URI:  %s (register it at the provider)\n", sso.CallbackURL(p.Config.BaseURL, slug, p.Name))
	} else {
		fmt.Fprintf(c.stdout, "SP metadata:   %s/metadata (give it to the IdP)\n", sso.SAMLURL(p.Config.BaseURL, slug, p.Name))
		fmt.Fprintf(c.stdout, "ACS URL:       %s/acs\n", sso.SAMLURL(p.Config.BaseURL, slug, p.Name))
	}
	return nil
}
