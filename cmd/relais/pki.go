package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/web/mtls"
)

// pkiCmd: a small private CA for client certificates (NET-4), for tests and
// small deployments. Larger ones use their own PKI; Relais only needs the
// CA certificate, and the CRL or fingerprints of revoked certificates.
func (c *cli) pkiCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "Create a private CA, client certificates and CRLs for mTLS (NET-4)"}
	day := 24 * time.Hour

	caCmd := &cobra.Command{Use: "ca", Short: "Private certificate authorities"}
	caCreate := &cobra.Command{
		Use:   "create",
		Short: "Create a CA (ECDSA P-256): <out>/<file>.crt and <file>.key (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "name", "out"); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			out, _ := cmd.Flags().GetString("out")
			file, _ := cmd.Flags().GetString("file")
			days, _ := cmd.Flags().GetInt("days")
			if days < 1 || days > 7300 {
				return usageError{errors.New("--days must be between 1 and 7300")}
			}
			ca, err := mtls.NewCA(name, time.Duration(days)*day, time.Now())
			if err != nil {
				return err
			}
			crt, key, err := mtls.WritePair(out, file, ca.Cert, ca.Key)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "CA certificate: %s\nCA key: %s (keep it offline; anyone holding it can issue client certificates)\nSHA-256: %s\nvalid until: %s\n",
				crt, key, mtls.Fingerprint(ca.Cert), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	caCreate.Flags().String("name", "", "the CA's common name, e.g. \"Acme client CA\"")
	caCreate.Flags().String("out", "", "directory to write into (existing files are never overwritten)")
	caCreate.Flags().String("file", "ca", "base name of the files")
	caCreate.Flags().Int("days", 3650, "validity in days")
	caCmd.AddCommand(caCreate)

	loadCA := func(cmd *cobra.Command) (*mtls.CA, error) {
		dir, _ := cmd.Flags().GetString("ca")
		file, _ := cmd.Flags().GetString("ca-file")
		ca, err := mtls.LoadCA(filepath.Join(dir, file+".crt"), filepath.Join(dir, file+".key"))
		if err != nil {
			return nil, fmt.Errorf("load the CA from %s: %w; create one with `relais pki ca create`", dir, err)
		}
		return ca, nil
	}

	client := &cobra.Command{Use: "client", Short: "Client certificates"}
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a client certificate (ECDSA P-256, client authentication only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "ca", "cn", "out"); err != nil {
				return err
			}
			ca, err := loadCA(cmd)
			if err != nil {
				return err
			}
			cn, _ := cmd.Flags().GetString("cn")
			out, _ := cmd.Flags().GetString("out")
			file, _ := cmd.Flags().GetString("file")
			days, _ := cmd.Flags().GetInt("days")
			dns, _ := cmd.Flags().GetStringSlice("dns")
			emails, _ := cmd.Flags().GetStringSlice("email")
			uris, _ := cmd.Flags().GetStringSlice("uri")
			if days < 1 || days > 825 {
				return usageError{errors.New("--days must be between 1 and 825")}
			}
			if file == "" {
				file = cn
			}
			cert, key, err := ca.IssueClient(mtls.ClientRequest{CommonName: cn, DNS: dns, Emails: emails, URIs: uris, Validity: time.Duration(days) * day}, time.Now())
			if err != nil {
				return usageError{err}
			}
			crt, keyPath, err := mtls.WritePair(out, file, cert, key)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "certificate: %s\nkey: %s\nSHA-256: %s\nvalid until: %s\nmap it in the authorities file with:\n  [[authority.client]]\n  match = \"sha256:%s\"\n  service_account = \"<API client id>\"\n",
				crt, keyPath, mtls.Fingerprint(cert), cert.NotAfter.UTC().Format(time.RFC3339), mtls.Fingerprint(cert))
			return nil
		},
	}
	issue.Flags().String("ca", "", "directory of the CA (from `relais pki ca create`)")
	issue.Flags().String("ca-file", "ca", "base name of the CA files")
	issue.Flags().String("cn", "", "subject common name")
	issue.Flags().StringSlice("dns", nil, "DNS subject alternative names")
	issue.Flags().StringSlice("email", nil, "email subject alternative names")
	issue.Flags().StringSlice("uri", nil, "URI subject alternative names")
	issue.Flags().String("out", "", "directory to write into")
	issue.Flags().String("file", "", "base name of the files (default: the common name)")
	issue.Flags().Int("days", 365, "validity in days (at most 825)")
	client.AddCommand(issue)

	crl := &cobra.Command{
		Use:   "crl",
		Short: "Write a CRL revoking the given certificates (PEM), signed by the CA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "ca", "out"); err != nil {
				return err
			}
			ca, err := loadCA(cmd)
			if err != nil {
				return err
			}
			paths, _ := cmd.Flags().GetStringSlice("revoke")
			number, _ := cmd.Flags().GetInt64("number")
			days, _ := cmd.Flags().GetInt("days")
			out, _ := cmd.Flags().GetString("out")
			if days < 1 || days > 366 || number < 1 {
				return usageError{errors.New("--days must be between 1 and 366 and --number at least 1")}
			}
			var certs []*x509.Certificate
			for _, p := range paths {
				crt, err := mtls.LoadCert(p)
				if err != nil {
					return fmt.Errorf("--revoke %s: %w", p, err)
				}
				certs = append(certs, crt)
			}
			data, err := ca.CRL(certs, number, time.Duration(days)*day, time.Now())
			if err != nil {
				return usageError{err}
			}
			if err := os.WriteFile(out, data, 0o644); err != nil { // #nosec G306 -- a CRL is public
				return err
			}
			fmt.Fprintf(c.stdout, "CRL %s: %d revoked, next update before %s; publish it where crl_file points and reload\n",
				out, len(certs), time.Now().Add(time.Duration(days)*day).UTC().Format(time.RFC3339))
			return nil
		},
	}
	crl.Flags().String("ca", "", "directory of the CA")
	crl.Flags().String("ca-file", "ca", "base name of the CA files")
	crl.Flags().StringSlice("revoke", nil, "certificate files to revoke (repeat the flag)")
	crl.Flags().Int64("number", 1, "CRL number: increase it with every new CRL")
	crl.Flags().Int("days", 7, "days until the next update; after it, certificates of this CA are refused until a new CRL is published")
	crl.Flags().String("out", "", "file to write (PEM)")

	fp := &cobra.Command{
		Use:   "fingerprint CERT.pem",
		Short: "Print the SHA-256 fingerprint of a certificate (for revoked = [...] or match = \"sha256:...\")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			crt, err := mtls.LoadCert(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, mtls.Fingerprint(crt))
			return nil
		},
	}
	cmd.AddCommand(caCmd, client, crl, fp)
	return cmd
}
