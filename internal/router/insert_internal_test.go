package router

import (
	"context"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// A message and its content are written together or not at all: for a
// tenant that does not exist, the messages row's foreign key fails the
// insert, and no content row is left (on PostgreSQL message_contents has no
// foreign key of its own since migration 00032; its rows come only with
// their message's).
func TestInsertForMissingTenantWritesNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rows := []preparedRow{{id: "m-1", channel: "email", shard: ShardOf("ghost", "m-1"), to: []byte("sealed"), content: []byte("sealed content")}}
		var ids []string
		err := db.Tenant("ghost").Tx(ctx, func(tx *store.Tx) error {
			var err error
			ids, err = insertMessages(ctx, tx, rows, 1)
			return err
		})
		if err == nil || len(ids) != 0 {
			t.Fatalf("insert for a missing tenant: %v %v", ids, err)
		}
		var n int
		err = db.Platform(ctx, func(p *store.PlatformTx) error {
			return p.QueryRow(ctx, `SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM message_contents)`).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Fatalf("rows left: %d %v", n, err)
		}
	})
}
