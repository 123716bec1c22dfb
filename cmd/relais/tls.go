package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/web/acme"
)

// tlsCmd: the ACME certificate shared by the nodes (NET-3), seen and renewed
// from the command line. Both use the configuration of `serve`
// (tls.acme_domains, ...) and the store; renew orders through the CA, whose
// validation is answered by the running nodes (the challenge is in the
// store).
func (c *cli) tlsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Show or force the renewal of the ACME certificate (NET-3)"}
	status := &cobra.Command{
		Use:   "acme-status",
		Short: "Show the ACME certificate in the store: names, serial, expiry, renewal date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			m, err := a.NewACME(nil, "cli")
			if err != nil {
				return usageError{err}
			}
			if err := m.Load(cmd.Context()); err != nil {
				return err
			}
			leaf := m.Leaf()
			if leaf == nil {
				fmt.Fprintf(c.stdout, "no certificate for %s in the store yet; `relais serve` orders it at start\n", strings.Join(m.Domains(), ", "))
				return nil
			}
			fmt.Fprintf(c.stdout, "names: %s\nissuer: %s\nserial: %s\nnot after: %s\nrenewal from: %s\n",
				strings.Join(leaf.DNSNames, ", "), leaf.Issuer.CommonName, leaf.SerialNumber.Text(16),
				leaf.NotAfter.UTC().Format(time.RFC3339), acme.RenewAt(leaf).UTC().Format(time.RFC3339))
			return nil
		},
	}
	renew := &cobra.Command{
		Use:   "acme-renew",
		Short: "Order a new certificate now (the running nodes answer the CA's validation and serve it at their next check)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			m, err := a.NewACME(nil, "cli")
			if err != nil {
				return usageError{err}
			}
			if err := m.Renew(cmd.Context()); err != nil {
				return fmt.Errorf("%w (a running `relais serve` must answer the CA's tls-alpn-01 validation on port 443)", err)
			}
			leaf := m.Leaf()
			fmt.Fprintf(c.stdout, "renewed: serial %s, not after %s; nodes serve it within tls.acme_check_interval (%s)\n",
				leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339), a.Config.TLS.ACMECheckInterval.D())
			return nil
		},
	}
	cmd.AddCommand(status, renew)
	return cmd
}
