package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/compliance"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/incidents"
)

// monitorCmds are `relais incident ...`, `relais flag ...`, `relais
// compliance report` and `relais alert list` (issue 12).
func (c *cli) monitorCmds() []*cobra.Command {
	return []*cobra.Command{c.incidentCmd(), c.flagCmd(), c.complianceCmd(), c.alertCmd()}
}

// incidentErr turns register errors into one line saying what to do.
func incidentErr(err error) error {
	switch {
	case errors.Is(err, incidents.ErrNotFound):
		return fmt.Errorf("%s; see `relais incident list`", strings.TrimPrefix(err.Error(), "incidents: "))
	case errors.Is(err, incidents.ErrInvalid), errors.Is(err, incidents.ErrState):
		return errors.New(strings.TrimPrefix(strings.TrimPrefix(err.Error(), "incidents: "), "invalid input: "))
	}
	return err
}

func readTextFlag(cmd *cobra.Command, name string) (string, error) {
	v, _ := cmd.Flags().GetString(name)
	file, _ := cmd.Flags().GetString(name + "-file")
	if file == "" {
		return v, nil
	}
	if v != "" {
		return "", usageError{fmt.Errorf("give --%s or --%s-file, not both", name, name)}
	}
	b, err := os.ReadFile(file) // #nosec G304 -- a file the operator names
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	return string(b), nil
}

func (c *cli) incidentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "incident", Short: "Keep the security incident register (INC-1, INC-2): create, list, show, notify, close"}
	var asJSON bool
	show := func(in incidents.Incident) error {
		if asJSON {
			return printJSON(c.stdout, in)
		}
		w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintf(w, "%s\t%s\n", in.Ref, in.Title)
		fmt.Fprintf(w, "status\t%s\ncategory\t%s\ncriticality\t%s\ndetected\t%s\n", in.Status, in.Category, in.Criticality, in.DetectedAt.Format(time.RFC3339))
		if in.Description != "" {
			fmt.Fprintf(w, "description\t%s\n", in.Description)
		}
		for _, a := range in.Tenants {
			state := "not notified, deadline " + a.Deadline.Format(time.RFC3339)
			if a.NotifiedAt != nil {
				state = "notified " + a.NotifiedAt.Format(time.RFC3339) + " (" + a.NotifiedVia + ")"
			} else if a.Overdue {
				state += " OVERDUE"
			}
			fmt.Fprintf(w, "tenant %s\t%s\n", a.TenantID, state)
		}
		for _, a := range in.Alerts {
			fmt.Fprintf(w, "alert\t%s/%s\n", a.TenantID, a.ID)
		}
		for _, e := range in.Timeline {
			fmt.Fprintf(w, "%s\t%s: %s (%s)\n", e.At.Format(time.RFC3339), e.Kind, e.Text, e.Actor)
		}
		if in.Status == "closed" {
			fmt.Fprintf(w, "report\t%s\nlessons\t%s\n", in.Report, in.Lessons)
		}
		return w.Flush()
	}
	create := &cobra.Command{
		Use:   "create --category C --criticality L --title T [--tenant T]... [--alert ID]...",
		Short: "Record an incident; each affected tenant gets a notification deadline (48 h from detection by default)",
		Example: `  relais incident create --category data_breach --criticality high --title "Export bucket exposed" \
      --detected 2026-11-28T08:10:00Z --tenant acme --tenant globex --alert acme-tenant-id/alert-id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var in incidents.New
			in.Category, _ = f.GetString("category")
			in.Criticality, _ = f.GetString("criticality")
			in.Title, _ = f.GetString("title")
			in.Tenants, _ = f.GetStringArray("tenant")
			in.Alerts, _ = f.GetStringArray("alert")
			if in.Category == "" || in.Criticality == "" || in.Title == "" {
				return usageError{fmt.Errorf("--category (%s), --criticality (%s) and --title are required",
					strings.Join(incidents.Categories, ", "), strings.Join(incidents.Criticalities, ", "))}
			}
			var err error
			if in.Description, err = readTextFlag(cmd, "description"); err != nil {
				return err
			}
			if d, _ := f.GetString("detected"); d != "" {
				if in.DetectedAt, err = time.Parse(time.RFC3339, d); err != nil {
					return usageError{fmt.Errorf("--detected %q: use an RFC 3339 time such as 2026-11-28T08:10:00Z", d)}
				}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			created, err := a.Monitor.Incidents.Create(operatorContext(cmd.Context()), in)
			if err != nil {
				return incidentErr(err)
			}
			if asJSON {
				return printJSON(c.stdout, created)
			}
			fmt.Fprintf(c.stdout, "%s recorded; notify the affected tenants before their deadline with `relais incident notify %s`\n", created.Ref, created.Ref)
			return nil
		},
	}
	cf := create.Flags()
	cf.String("category", "", "one of "+strings.Join(incidents.Categories, ", "))
	cf.String("criticality", "", "one of "+strings.Join(incidents.Criticalities, ", "))
	cf.String("title", "", "short title")
	cf.String("description", "", "what happened")
	cf.String("description-file", "", "read the description from a file")
	cf.String("detected", "", "when it was detected (RFC 3339; default now)")
	cf.StringArray("tenant", nil, "an affected tenant (slug or id); repeat for several")
	cf.StringArray("alert", nil, "a linked alert (tenant-id/alert-id, or alert-id for a platform alert); repeat for several")

	list := &cobra.Command{
		Use:   "list [--status open|closed]",
		Short: "List incidents, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			status, _ := cmd.Flags().GetString("status")
			if status != "" && status != "open" && status != "closed" {
				return usageError{fmt.Errorf("--status %q: use open or closed", status)}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			all, err := a.Monitor.Incidents.List(operatorContext(cmd.Context()), status)
			if err != nil {
				return incidentErr(err)
			}
			if asJSON {
				if all == nil {
					all = []incidents.Incident{}
				}
				return printJSON(c.stdout, all)
			}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "REF\tSTATUS\tCRITICALITY\tCATEGORY\tDETECTED\tTENANTS\tTITLE")
			for _, in := range all {
				pending := 0
				for _, t := range in.Tenants {
					if t.NotifiedAt == nil {
						pending++
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d (%d to notify)\t%s\n", in.Ref, in.Status, in.Criticality, in.Category,
					in.DetectedAt.Format("2006-01-02 15:04Z"), len(in.Tenants), pending, in.Title)
			}
			return w.Flush()
		},
	}
	list.Flags().String("status", "", "open or closed")

	showCmd := &cobra.Command{
		Use:   "show INC-N",
		Short: "Show an incident: tenants and their notification, alerts, timeline, report",
		Args:  exactArgs(1, "give the incident reference, e.g. `relais incident show INC-1`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := incidents.ParseRef(args[0])
			if err != nil {
				return usageError{incidentErr(err)}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			in, err := a.Monitor.Incidents.Get(operatorContext(cmd.Context()), n)
			if err != nil {
				return incidentErr(err)
			}
			return show(in)
		},
	}

	notifyCmd := &cobra.Command{
		Use:   "notify INC-N [--tenant T] [--manual TEXT]",
		Short: "Notify the affected tenants (email and/or signed webhook to their security contacts) and record it",
		Long: `Send the incident's notification to the security contacts of every affected
tenant not yet notified (or of --tenant only), by email through monitor.smtp_addr
and/or to the tenant's signed webhook, and record when and how. With --manual,
record a notification made another way (a letter, a call) instead of sending.`,
		Example: `  relais incident notify INC-1
  relais incident notify INC-1 --tenant acme --manual "registered letter to the DPO"`,
		Args: exactArgs(1, "give the incident reference, e.g. `relais incident notify INC-1`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := incidents.ParseRef(args[0])
			if err != nil {
				return usageError{incidentErr(err)}
			}
			var o incidents.NotifyOptions
			o.TenantID, _ = cmd.Flags().GetString("tenant")
			o.Manual, _ = cmd.Flags().GetString("manual")
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			in, err := a.Monitor.Incidents.Notify(operatorContext(cmd.Context()), n, o)
			if err != nil {
				if in.Number != 0 {
					_ = show(in)
				}
				return incidentErr(err)
			}
			return show(in)
		},
	}
	notifyCmd.Flags().String("tenant", "", "notify only this affected tenant (slug or id)")
	notifyCmd.Flags().String("manual", "", "record a notification made outside Relais, with how it was made")

	closeCmd := &cobra.Command{
		Use:   "close INC-N --report TEXT [--lessons TEXT]",
		Short: "Close an incident with its report and lessons learned (every affected tenant must have been notified)",
		Args:  exactArgs(1, "give the incident reference, e.g. `relais incident close INC-1 --report-file report.md`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := incidents.ParseRef(args[0])
			if err != nil {
				return usageError{incidentErr(err)}
			}
			report, err := readTextFlag(cmd, "report")
			if err != nil {
				return err
			}
			lessons, err := readTextFlag(cmd, "lessons")
			if err != nil {
				return err
			}
			if strings.TrimSpace(report) == "" {
				return usageError{errors.New("--report or --report-file is required: the closing report")}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			in, err := a.Monitor.Incidents.Close(operatorContext(cmd.Context()), n, report, lessons)
			if err != nil {
				return incidentErr(err)
			}
			return show(in)
		},
	}
	for _, name := range []string{"report", "lessons"} {
		closeCmd.Flags().String(name, "", "the closing "+name)
		closeCmd.Flags().String(name+"-file", "", "read the "+name+" from a file")
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(create, list, showCmd, notifyCmd, closeCmd)
	return cmd
}

func (c *cli) flagCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "flag", Short: "Switch a tenant's feature flags (DEV-1), without a restart"}
	var tenant string
	var asJSON bool
	set := &cobra.Command{
		Use:     "set --tenant T NAME on|off",
		Short:   "Switch a flag on or off for a tenant (audited; every node sees it within seconds)",
		Example: "  relais flag set --tenant acme sms_sending off",
		Args:    exactArgs(2, "give the flag and on or off, e.g. `relais flag set --tenant acme sms_sending off`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usageError{errors.New("--tenant is required")}
			}
			var on bool
			switch args[1] {
			case "on", "true":
				on = true
			case "off", "false":
			default:
				return usageError{fmt.Errorf("%q: use on or off", args[1])}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				st, err := tc.a.Monitor.Flags.Set(tc.ctx, tc.t.ID, args[0], on)
				if errors.Is(err, flags.ErrUnknown) {
					return fmt.Errorf("no flag %q; %s", args[0], tc.see("flag list"))
				}
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, st)
				}
				fmt.Fprintf(c.stdout, "flag %s is %s for %s\n", st.Name, map[bool]string{true: "on", false: "off"}[st.Enabled], tc.t.Slug)
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List the flags and their value for a tenant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return usageError{errors.New("--tenant is required")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				all, err := tc.a.Monitor.Flags.List(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, all)
				}
				w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(w, "FLAG\tVALUE\tDEFAULT\tDESCRIPTION")
				for _, st := range all {
					desc := ""
					for _, d := range flags.Known {
						if d.Name == st.Name {
							desc = d.Description
						}
					}
					fmt.Fprintf(w, "%s\t%v\t%v\t%s\n", st.Name, st.Enabled, st.Default, desc)
				}
				return w.Flush()
			})
		},
	}
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "", "tenant slug or id")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(set, list)
	return cmd
}

func (c *cli) complianceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "compliance", Short: "Print the live compliance evidence report (AUD-3)"}
	var tenant, format, output string
	report := &cobra.Command{
		Use:   "report --tenant T [--format json|md|html] [--output FILE]",
		Short: "Evidence of what is in force for a tenant, and every control's status",
		Long: `Print the live evidence report for a tenant: TLS versions and suites, the
certificate, the password preset and its deviations from NIST SP 800-63B and
ANSSI (explained), lockout, sessions, 2FA enforcement and coverage, SSO, IP
allow-lists, retention, backups, key providers and ages, the audit trail's
checkpoint and verification, the clock, open incidents, and for each control
of the catalogue whether it is in force, with its evidence. Figures are read
from the configuration and the store at the time of the report.`,
		Example: "  relais compliance report --tenant acme --format md > acme-compliance.md",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return usageError{errors.New("--tenant is required")}
			}
			switch format {
			case compliance.FormatJSON, compliance.FormatMarkdown, compliance.FormatHTML:
			default:
				return usageError{fmt.Errorf("--format %q: use json, md or html", format)}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				rep, err := tc.a.Monitor.Compliance(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if output == "" {
					return rep.Write(c.stdout, format)
				}
				f, err := os.OpenFile(output, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) // #nosec G304 -- the operator's output file
				if err != nil {
					return fmt.Errorf("--output: %w", err)
				}
				if err := rep.Write(f, format); err != nil {
					_ = f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("--output: %w", err)
				}
				fmt.Fprintf(c.stdout, "compliance report of %s written to %s (%d of %d controls in force)\n", tc.t.Slug, output, rep.Summary.InForce, rep.Summary.Controls)
				return nil
			})
		},
	}
	f := report.Flags()
	f.StringVar(&tenant, "tenant", "", "tenant slug or id")
	f.StringVar(&format, "format", "json", "json, md or html")
	f.StringVar(&output, "output", "", "write to this file instead of the standard output")
	cmd.AddCommand(report)
	return cmd
}

func (c *cli) alertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alert", Short: "List the built-in alerts (AVL-5)"}
	var state, rule string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--state firing|resolved] [--rule R]",
		Short: "List alerts of every tenant and the platform, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "" && state != alerts.StateFiring && state != alerts.StateResolved {
				return usageError{fmt.Errorf("--state %q: use firing or resolved", state)}
			}
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			all, err := alerts.List(cmd.Context(), a.DB, "", true, alerts.Filter{State: state, Rule: rule, Limit: 1000})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, all)
			}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "FIRED\tSTATE\tSEVERITY\tRULE\tTENANT\tSUMMARY")
			for _, al := range all {
				tenant := al.TenantID
				if tenant == "" {
					tenant = "(platform)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", al.FiredAt.Format("2006-01-02 15:04Z"), al.State, al.Severity, al.Rule, tenant, al.Summary)
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "firing or resolved")
	list.Flags().StringVar(&rule, "rule", "", "one of "+strings.Join(alerts.RuleNames, ", "))
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}
