// Command relais is the Relais platform: one binary for the server and
// every operator task. Run `relais --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/relais-dev/relais/internal/keys"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit code; errors are
// printed as one line that says what to do.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, keys.ErrShredded) {
			fmt.Fprintln(stderr, "relais: this tenant's data is crypto-shredded: its keys were destroyed, so it can never be decrypted again (see `relais keys status`)")
			return 1
		}
		fmt.Fprintf(stderr, "relais: %s\n", oneLine(err.Error()))
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
			return 2
		}
		return 1
	}
	return 0
}

// oneLine folds a multi-line error (driver errors, cobra suggestions) into
// one line, so that every failure prints exactly one line.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}
