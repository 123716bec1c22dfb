package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// keysCmd is `relais keys`: master-key and tenant-key rotation, and status
// (DATA-2, ISO-2).
func (c *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Rotate the master key and tenant data keys; show key status"}
	cmd.AddCommand(c.keysStatusCmd(), c.keysRotateCmd(), c.keysRotateMasterCmd(), c.keysCheckSecretCmd())
	return cmd
}

func (c *cli) keysStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [--tenant T]",
		Short: "Show the master key provider and each tenant's key versions, ages and rotations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, _ := cmd.Flags().GetBool("json")
			ref, _ := cmd.Flags().GetString("tenant")
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			ctx := operatorContext(cmd.Context())
			var list []tenants.Tenant
			if ref != "" {
				t, err := a.Tenants.Get(ctx, ref)
				if err != nil {
					return tenantErr(err)
				}
				list = []tenants.Tenant{t}
			} else if list, err = a.Tenants.List(ctx); err != nil {
				return err
			}
			master := map[string]any{"provider": a.Config.Keys.Provider, "id": a.Master.ID()}
			if fk, ok := a.Master.(*keys.FileKeyring); ok {
				master["ids"] = fk.IDs()
			}
			type row struct {
				Slug string `json:"slug"`
				tenants.KeyStatus
			}
			var rows []row
			for _, t := range list {
				st, err := a.Tenants.KeyStatus(ctx, t.ID)
				if err != nil {
					return tenantErr(err)
				}
				rows = append(rows, row{Slug: t.Slug, KeyStatus: st})
			}
			if asJSON {
				return printJSON(c.stdout, map[string]any{"master_key": master, "tenants": rows})
			}
			fmt.Fprintf(c.stdout, "master key: %s (provider %s)\n", a.Master.ID(), a.Config.Keys.Provider)
			if ids, ok := master["ids"].([]string); ok && len(ids) > 1 {
				fmt.Fprintf(c.stdout, "  also able to unwrap (next or retired): %s\n", strings.Join(ids[1:], ", "))
			}
			for _, r := range rows {
				if r.Shredded {
					fmt.Fprintf(c.stdout, "tenant %s: SHREDDED (every key version destroyed)\n", r.Slug)
					continue
				}
				var vs []string
				for _, v := range r.Versions {
					vs = append(vs, fmt.Sprintf("v%d %s %dd", v.Version, v.State, v.AgeDays))
				}
				fmt.Fprintf(c.stdout, "tenant %s: %s\n", r.Slug, strings.Join(vs, ", "))
				for _, ro := range r.Rotations {
					if ro.State == "running" {
						fmt.Fprintf(c.stdout, "  rotation to v%d RUNNING: %d rows so far (at %s); resume with `relais keys rotate --tenant %s`\n", ro.ToVersion, ro.RowsDone, ro.Table, r.Slug)
					} else if ro.FinishedAt != nil {
						fmt.Fprintf(c.stdout, "  rotation to v%d done %s (%d rows)\n", ro.ToVersion, ro.FinishedAt.Format(time.RFC3339), ro.RowsDone)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().String("tenant", "", "only this tenant (slug or id)")
	cmd.Flags().Bool("json", false, "machine-readable output")
	return cmd
}

func (c *cli) keysRotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate --tenant T [--batch-size N]",
		Short: "Give a tenant a new data key version and re-encrypt its personal fields under it",
		Long: `Create a new data key version for the tenant (new data is sealed with it at
once) and re-encrypt every personal field under it, in batches, each batch
committed with its progress. Reads keep working throughout: the older
versions stay readable. If interrupted (even by kill -9), run the same
command again: it resumes where it stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			batch, _ := cmd.Flags().GetInt("batch-size")
			if batch < 1 || batch > 100_000 {
				return usageError{errors.New("--batch-size must be 1 to 100000")}
			}
			asJSON, _ := cmd.Flags().GetBool("json")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				v, err := tc.a.Tenants.StartRotation(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if !asJSON {
					fmt.Fprintf(c.stderr, "tenant %s: rotating to data key v%d\n", tc.t.Slug, v)
				}
				var last tenants.RotationProgress
				err = tc.a.Tenants.RunRotation(tc.ctx, tc.a.Keyring, tc.t.ID, tenants.RunOptions{BatchSize: batch, Progress: func(p tenants.RotationProgress) {
					if !asJSON && (p.Table != last.Table || p.RowsDone-last.RowsDone >= int64(batch)) {
						fmt.Fprintf(c.stderr, "progress: %d rows re-encrypted or checked (%s)\n", p.RowsDone, p.Table)
					}
					last = p
				}})
				if err != nil {
					if errors.Is(err, context.Canceled) {
						return fmt.Errorf("rotation interrupted after %d rows: every field stays readable; run `relais keys rotate --tenant %s` again to finish", last.RowsDone, tc.t.Slug)
					}
					return err
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"tenant": tc.t.Slug, "version": v, "rows": last.RowsDone, "state": "done"})
				}
				fmt.Fprintf(c.stdout, "tenant %s: data key rotated to v%d; %d rows checked, every field now under v%d\n", tc.t.Slug, v, last.RowsDone, v)
				return nil
			})
		},
	}
	cmd.Flags().String("tenant", "", "the tenant's slug or id")
	cmd.Flags().Int("batch-size", 500, "rows per transaction")
	cmd.Flags().Bool("json", false, "machine-readable output")
	return cmd
}

func (c *cli) keysRotateMasterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-master",
		Short: "Re-wrap every tenant data key under a new master key version",
		Long: `Make a new master key version (a new key file next to the current one, or a
new version of the Vault transit / PKCS#11 keys) and re-wrap every tenant's
data keys under it. The server keeps running. With the key file, the old
file is kept as master.key.retired-<id>, so that older backups can still be
restored; copy the new master.key to every node. If interrupted, run it
again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, _ := cmd.Flags().GetBool("json")
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			ctx := operatorContext(cmd.Context())
			n := 0
			platform := func(what string, f func(context.Context, *store.DB, keys.MasterKey) (int, error)) func(context.Context, keys.MasterKey) (int, error) {
				return func(ctx context.Context, mk keys.MasterKey) (int, error) {
					k, err := f(ctx, a.DB, mk)
					if err == nil && !asJSON {
						fmt.Fprintf(c.stderr, "%d %s re-wrapped\n", k, what)
					}
					return k, err
				}
			}
			id, err := a.Tenants.RotateMaster(ctx, func(t tenants.Tenant, versions int) {
				n++
				if !asJSON {
					fmt.Fprintf(c.stderr, "tenant %s: %d data key version(s) re-wrapped\n", t.Slug, versions)
				}
			}, platform("token signing key(s)", jwtauth.RewrapSigningKeys), platform("audit log signing key(s)", audit.RewrapSigningKeys))
			if err != nil {
				return fmt.Errorf("master key rotation stopped (run the command again to finish it): %w", err)
			}
			if asJSON {
				return printJSON(c.stdout, map[string]any{"master_key_id": id, "tenants": n})
			}
			fmt.Fprintf(c.stdout, "master key rotated to %s; %d tenant(s) re-wrapped\n", id, n)
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "machine-readable output")
	return cmd
}

func (c *cli) keysCheckSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check-secret --tenant T --connector NAME --field PATH < candidate",
		Short: "Confirm a stored connector secret without reading it (reads the candidate from stdin)",
		Long: `Compare the secret read from standard input with the one stored (encrypted)
in a connector's configuration at --field (a JSON path such as password or
dkim.private_key_pem). It prints whether they match and the stored secret's
key-check value, never the secret. Exit code 1 when they differ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "connector", "field"); err != nil {
				return err
			}
			ref, _ := cmd.Flags().GetString("connector")
			field, _ := cmd.Flags().GetString("field")
			b, err := io.ReadAll(io.LimitReader(c.stdin, 1<<20))
			if err != nil {
				return err
			}
			candidate := bytes.TrimRight(b, "\r\n")
			defer clear(b)
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				match, kcv, err := tc.a.Connectors.CheckSecret(tc.ctx, tc.t.ID, ref, field, candidate)
				if errors.Is(err, router.ErrNoSuchSecret) {
					return usageError{fmt.Errorf("--field %s: the connector's configuration holds no secret there", field)}
				}
				if err != nil {
					return err
				}
				if !match {
					return fmt.Errorf("the secret does NOT match the one stored (stored check value %s)", kcv)
				}
				fmt.Fprintf(c.stdout, "the secret matches (check value %s)\n", kcv)
				return nil
			})
		},
	}
	cmd.Flags().String("tenant", "", "the tenant's slug or id")
	cmd.Flags().String("connector", "", "the connector's name or id")
	cmd.Flags().String("field", "", "where the secret is in its configuration (password, dkim.private_key_pem, secret...)")
	return cmd
}

// tenantDestroyKeysCmd is `relais tenant destroy-keys` (REV-3).
func (c *cli) tenantDestroyKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "destroy-keys SLUG|ID --confirm SLUG [--reason TEXT]",
		Short: "Crypto-shred a tenant: destroy its data keys for good (irreversible)",
		Long: `Destroy every version of the tenant's data key (and, with Vault or an HSM,
its per-tenant master key), delete its per-contact keys, disable the tenant,
and write a shredding record and audit events. All of the tenant's
personal data, in the store and in every backup, can then never be
decrypted. Irreversible: --confirm must repeat the tenant's slug.`,
		Args: exactArgs(1, "give the tenant's slug or id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(cmd, "confirm"); err != nil {
				return err
			}
			confirm, _ := cmd.Flags().GetString("confirm")
			reason, _ := cmd.Flags().GetString("reason")
			asJSON, _ := cmd.Flags().GetBool("json")
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			ctx := operatorContext(cmd.Context())
			t, err := a.Tenants.Get(ctx, args[0])
			if err != nil {
				return tenantErr(err)
			}
			if confirm != t.Slug {
				return usageError{fmt.Errorf("--confirm must be the tenant's slug %q: nothing was destroyed", t.Slug)}
			}
			if t, err = a.Tenants.DestroyKeys(ctx, t.ID, reason); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, map[string]any{"tenant": t.Slug, "id": t.ID, "shredded": true, "status": t.Status})
			}
			fmt.Fprintf(c.stdout, "tenant %s: keys destroyed; its data is crypto-shredded and can never be decrypted again (shredding record written; tenant disabled)\n", t.Slug)
			return nil
		},
	}
	cmd.Flags().String("confirm", "", "the tenant's slug again, to confirm")
	cmd.Flags().String("reason", "", "why (kept in the shredding record and the audit trail)")
	cmd.Flags().Bool("json", false, "machine-readable output")
	return cmd
}
