package privacy

import (
	"context"
	"slices"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestContentsCopiedBeforeMessages: an anonymised copy writes a tenant's
// tables one after the other, in transactions of their own, in
// schemaTables's order; message_contents must come before messages. The
// backup change log logs a content row's insert only with its message's
// key (migration 00034, backup.insertsLoggedWith): a content row written
// after its message, with a backup point between the two, would be missed
// by the next incremental. Written first, the message's later insert logs
// the key and the incremental reads both.
func TestContentsCopiedBeforeMessages(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		tabs, err := schemaTables(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		idx := func(name string) int {
			return slices.IndexFunc(tabs, func(tb table) bool { return tb.Name == name })
		}
		c, m := idx("message_contents"), idx("messages")
		if c < 0 || m < 0 || c > m {
			t.Fatalf("message_contents at %d, messages at %d in the copy's order", c, m)
		}
	})
}
