package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/audit"
)

// auditLog is an opened app and the log a command works on.
type auditLog struct {
	ctx    context.Context
	a      *app.App
	tenant string // "" for the operator's log
	label  string // the tenant's slug, or "operator"
	svc    *audit.Service
}

func (l *auditLog) close() { _ = l.a.Close() }

// openAuditLog opens the app and finds the log named by --tenant or
// --operator.
func (c *cli) openAuditLog(cmd *cobra.Command) (*auditLog, error) {
	ref, _ := cmd.Flags().GetString("tenant")
	op, _ := cmd.Flags().GetBool("operator")
	if (ref == "") == !op {
		return nil, usageError{fmt.Errorf("give --tenant SLUG (a tenant's log) or --operator (the operator's log); see `%s --help`", cmd.CommandPath())}
	}
	a, err := c.open(cmd)
	if err != nil {
		return nil, err
	}
	l := &auditLog{ctx: operatorContext(cmd.Context()), a: a, label: "operator", svc: &audit.Service{DB: a.DB, Master: a.Master, Logger: a.Log}}
	if ref != "" {
		t, err := a.Tenants.Get(l.ctx, ref)
		if err != nil {
			_ = a.Close()
			return nil, tenantErr(err)
		}
		l.tenant, l.label = t.ID, t.Slug
	}
	return l, nil
}

// pubkeyPath is where the log's public key is written in the data directory.
func (l *auditLog) pubkeyPath() string {
	name := "operator"
	if l.tenant != "" {
		name = l.tenant
	}
	return filepath.Join(l.a.Config.DataDir, "audit-keys", name+".pub")
}

// writePubkey writes the log's verifier key to the data directory.
func (l *auditLog) writePubkey() (string, string, error) {
	vk, err := l.svc.PublicKey(l.ctx, l.tenant)
	if err != nil {
		return "", "", err
	}
	path := l.pubkeyPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return "", "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, []byte(vk+"\n"), 0o644); err != nil { // #nosec G306 -- a public key, for auditors to copy
		return "", "", fmt.Errorf("write %s: %w", path, err)
	}
	return vk, path, nil
}

// parseAuditTime reads an RFC 3339 time or a date (YYYY-MM-DD, UTC).
func parseAuditTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Errorf("--%s %q: use an RFC 3339 time (2025-01-31T00:00:00Z) or a date (2025-01-31)", flag, v)}
}

func readKeyFile(path string) (string, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("read the public key: %w; give the file `relais audit pubkey` wrote", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *cli) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, export, checkpoint and purge the audit trail",
		Long: `Each tenant's audit trail (and the operator's, with --operator) is a
hash-chained Merkle tree log with signed checkpoints. These commands verify
it, export a period of it with the proofs an auditor needs to verify it
offline, print its public key, sign a checkpoint, and apply retention.`,
	}
	var asJSON bool
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")
	cmd.PersistentFlags().Bool("operator", false, "the operator's log instead of a tenant's")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")

	verify := &cobra.Command{
		Use:   "verify (--tenant T | --operator) [--key PUBKEY_FILE] | verify --export FILE --key PUBKEY_FILE",
		Short: "Verify a log in the store, or an exported file offline",
		Long: `With --tenant (or --operator): recompute every event's leaf and chain
hash, the stored Merkle tree, and check every signed checkpoint's signature
and its consistency with the tree; with --key, also check that the log's
key is the given one. With --export: verify an export file offline, with
only the public key (no store needed). The first inconsistency is reported
(which event, which checkpoint) and the exit code is 1.`,
		Example: `  relais audit verify --tenant acme
  relais audit verify --export acme-2025.jsonl --key acme.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exportPath, _ := cmd.Flags().GetString("export")
			keyPath, _ := cmd.Flags().GetString("key")
			if exportPath != "" {
				return c.verifyExport(exportPath, keyPath, asJSON)
			}
			var key string
			if keyPath != "" {
				var err error
				if key, err = readKeyFile(keyPath); err != nil {
					return err
				}
			}
			l, err := c.openAuditLog(cmd)
			if err != nil {
				return err
			}
			defer l.close()
			rep, err := l.svc.Verify(l.ctx, l.tenant, audit.VerifyOptions{Key: key})
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(c.stdout, rep); err != nil {
					return err
				}
			} else if rep.OK {
				fmt.Fprintf(c.stdout, "audit log of %s verifies: %d events (%d purged), tree of %d, %d signed checkpoints, key %s (authenticated by the master key: %v)\n",
					l.label, rep.Events, rep.Purged, rep.TreeSize, rep.Checkpoints, keyOrNone(rep.Key), rep.KeyAuthenticated)
			}
			if !rep.OK {
				where := ""
				switch {
				case rep.Problem.Checkpoint != 0:
					where = fmt.Sprintf(" (checkpoint at tree size %d)", rep.Problem.Checkpoint)
				case rep.Problem.Seq != 0:
					where = fmt.Sprintf(" (event %d)", rep.Problem.Seq)
				}
				return fmt.Errorf("audit log of %s does NOT verify%s: %s", l.label, where, rep.Problem.Reason)
			}
			return nil
		},
	}
	verify.Flags().String("export", "", "an export file to verify offline (needs --key)")
	verify.Flags().String("key", "", "the log's public key file (from `relais audit pubkey`)")

	export := &cobra.Command{
		Use:   "export (--tenant T | --operator) [--from TIME] [--to TIME] --out FILE",
		Short: "Export a period of a log with a signed checkpoint and proofs (JSON Lines)",
		Long: `Write the events of [--from, --to) as JSON Lines with a signed checkpoint
and the hashes needed to verify them offline with only the log's public
key (relais audit verify --export FILE --key PUBKEY_FILE). The export is
itself recorded in the log. --out - writes to standard output. The public
key is also written to the data directory (audit-keys/).`,
		Example: `  relais audit export --tenant acme --from 2025-01-01 --to 2025-07-01 --out acme-h1.jsonl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				return usageError{errors.New("--out FILE is required (- for standard output); see `relais audit export --help`")}
			}
			fromS, _ := cmd.Flags().GetString("from")
			toS, _ := cmd.Flags().GetString("to")
			from, err := parseAuditTime("from", fromS)
			if err != nil {
				return err
			}
			to, err := parseAuditTime("to", toS)
			if err != nil {
				return err
			}
			if !from.IsZero() && !to.IsZero() && !to.After(from) {
				return usageError{errors.New("--to must be after --from")}
			}
			l, err := c.openAuditLog(cmd)
			if err != nil {
				return err
			}
			defer l.close()
			_, keyPath, err := l.writePubkey()
			if err != nil {
				return err
			}
			var w io.Writer = c.stdout
			report := c.stdout
			var f *os.File
			if out != "-" {
				// An export holds the trail's metadata: readable by its owner only.
				if f, err = os.OpenFile(filepath.Clean(out), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
					return fmt.Errorf("create %s: %w", out, err)
				}
				w = f
			} else {
				report = c.stderr
			}
			sum, err := l.svc.Export(l.ctx, l.tenant, audit.ExportRequest{From: from, To: to}, w)
			if f != nil {
				if cerr := f.Close(); err == nil && cerr != nil {
					err = fmt.Errorf("write %s: %w", out, cerr)
				}
				if err != nil {
					_ = os.Remove(out)
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(report, sum)
			}
			fmt.Fprintf(report, "exported events %d to %d of %s (%d events), signed tree of %d\npublic key: %s\nverify with: relais audit verify --export %s --key %s\n",
				sum.FirstSeq, sum.LastSeq, l.label, sum.Events, sum.TreeSize, keyPath, out, keyPath)
			return nil
		},
	}
	export.Flags().String("from", "", "start of the period (RFC 3339 time or YYYY-MM-DD); default: the first event")
	export.Flags().String("to", "", "end of the period, excluded; default: now")
	export.Flags().String("out", "", "the file to write (- for standard output)")

	pubkey := &cobra.Command{
		Use:   "pubkey (--tenant T | --operator)",
		Short: "Print a log's public key (note verifier key) and write it to the data directory",
		Long: `Print the Ed25519 public key that signs the log's checkpoints, as a
golang.org/x/mod/sumdb/note verifier key (name+hash+key), and write it to
audit-keys/ in the data directory. The key is created on first use (an
audited key event). Give it to auditors: it is all they need to verify an
export.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := c.openAuditLog(cmd)
			if err != nil {
				return err
			}
			defer l.close()
			vk, path, err := l.writePubkey()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, map[string]string{"key": vk, "file": path})
			}
			fmt.Fprintln(c.stdout, vk)
			return nil
		},
	}

	checkpoint := &cobra.Command{
		Use:   "checkpoint (--tenant T | --operator | --all)",
		Short: "Sign a checkpoint of a log now (the server does it every minute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all, _ := cmd.Flags().GetBool("all"); all {
				a, err := c.open(cmd)
				if err != nil {
					return err
				}
				defer a.Close()
				svc := &audit.Service{DB: a.DB, Master: a.Master, Logger: a.Log}
				n, err := svc.CheckpointAll(operatorContext(cmd.Context()))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "signed %d checkpoints\n", n)
				return nil
			}
			l, err := c.openAuditLog(cmd)
			if err != nil {
				return err
			}
			defer l.close()
			cp, err := l.svc.Checkpoint(l.ctx, l.tenant, audit.ReasonManual)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, cp)
			}
			fmt.Fprintf(c.stdout, "checkpoint of %s: tree of %d events, root %s\n", l.label, cp.Size, cp.Root)
			return nil
		},
	}
	checkpoint.Flags().Bool("all", false, "every log that grew since its last checkpoint")

	purge := &cobra.Command{
		Use:   "purge (--tenant T | --operator) [--dry-run]",
		Short: "Apply retention: remove expired event bodies, keep their hashes",
		Long: `Remove the bodies of events older than the retention of their category
(the tenant's policy.audit.retention, and access_retention for reads of
personal data). Hashes, times and categories stay, so verification and
every earlier checkpoint still hold. A report event records what was
purged; --dry-run only reports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dry, _ := cmd.Flags().GetBool("dry-run")
			l, err := c.openAuditLog(cmd)
			if err != nil {
				return err
			}
			defer l.close()
			pol := l.a.Config.Policy
			if l.tenant != "" {
				if pol, err = l.a.Tenants.Policy(l.ctx, l.tenant); err != nil {
					return err
				}
			}
			rep, err := l.svc.Purge(l.ctx, l.tenant, audit.RetentionFrom(pol.Audit), dry)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, rep)
			}
			verb := "purged"
			if dry {
				verb = "would purge"
			}
			fmt.Fprintf(c.stdout, "%s %d event bodies of %s (events up to %d)\n", verb, rep.Total, l.label, rep.UptoSeq)
			for _, pc := range rep.Categories {
				fmt.Fprintf(c.stdout, "  %s: %d events older than %s (seq %d to %d, %d ranges)\n", pc.Category, pc.Count, pc.Cutoff.Format(time.RFC3339), pc.FirstSeq, pc.LastSeq, pc.Ranges)
			}
			if rep.ReportSeq != 0 {
				fmt.Fprintf(c.stdout, "report: event %d; checkpoint: tree of %d\n", rep.ReportSeq, rep.Checkpoint)
			}
			return nil
		},
	}
	purge.Flags().Bool("dry-run", false, "report what would be purged, change nothing")

	cmd.AddCommand(verify, export, pubkey, checkpoint, purge)
	return cmd
}

func keyOrNone(s string) string {
	if s == "" {
		return "(none yet)"
	}
	return s
}

// verifyExport checks an export file offline.
func (c *cli) verifyExport(path, keyPath string, asJSON bool) error {
	if keyPath == "" {
		return usageError{errors.New("--export needs --key PUBKEY_FILE (from `relais audit pubkey`)")}
	}
	key, err := readKeyFile(keyPath)
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return fmt.Errorf("open the export: %w", err)
	}
	defer func() { _ = f.Close() }()
	rep, err := audit.VerifyExport(f, key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if asJSON {
		return printJSON(c.stdout, rep)
	}
	fmt.Fprintf(c.stdout, "export verifies: log %s, events %d to %d (%d events, %d purged), in the signed tree of %d events (root %s)\n",
		rep.Origin, rep.FirstSeq, rep.LastSeq, rep.Events, rep.Purged, rep.TreeSize, rep.Root)
	return nil
}
