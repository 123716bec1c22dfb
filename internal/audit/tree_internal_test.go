package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestCompactRangeMatchesTlog: the stored hashes and roots the checkpoint
// job computes are exactly tlog's (StoredHashesForRecordHash, TreeHash),
// and a compact range rebuilt from stored hashes continues the same tree.
func TestCompactRangeMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("no hash %d", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	var cr compactRange
	if cr.root() != sha256.Sum256(nil) {
		t.Fatal("empty root")
	}
	for n := int64(0); n < 300; n++ {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		leaf := tlog.RecordHash(b[:])
		want, err := tlog.StoredHashesForRecordHash(n, leaf, reader)
		if err != nil {
			t.Fatal(err)
		}
		got := cr.push(leaf)
		if fmt.Sprint(got) != fmt.Sprint(want) || int64(len(stored)) != tlog.StoredHashIndex(0, n) {
			t.Fatalf("record %d: stored hashes %v, tlog %v", n, got, want)
		}
		stored = append(stored, want...)
		root, err := tlog.TreeHash(n+1, reader)
		if err != nil {
			t.Fatal(err)
		}
		if cr.root() != root {
			t.Fatalf("size %d: root differs from tlog.TreeHash", n+1)
		}
		hs, err := reader.ReadHashes(compactIndexes(n + 1))
		if err != nil {
			t.Fatal(err)
		}
		re, err := newCompactRange(n+1, hs)
		if err != nil || re.root() != root {
			t.Fatalf("size %d: rebuilt range: %v", n+1, err)
		}
	}
}
