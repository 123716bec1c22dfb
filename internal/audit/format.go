package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/store"
)

// The hashed encodings. Strings are encoded as Go's encoding/json encodes
// them (<, > and & escaped as \u003c, \u003e and \u0026); fields appear in
// the order written here; times are Unix microseconds; details are the
// stored JSON text, as a string.

// canonicalV1 is the hashed encoding of a format 1 record (written before
// body digests): a fixed field order, the details as their stored text.
func canonicalV1(r Record) []byte {
	v := struct {
		V          int    `json:"v"`
		TenantID   string `json:"tenant_id"`
		Seq        int64  `json:"seq"`
		At         int64  `json:"at"`
		Category   string `json:"category"`
		Action     string `json:"action"`
		ActorType  string `json:"actor_type"`
		ActorID    string `json:"actor_id"`
		ObjectType string `json:"object_type"`
		ObjectID   string `json:"object_id"`
		IP         string `json:"ip"`
		UserAgent  string `json:"user_agent"`
		RequestID  string `json:"request_id"`
		Details    string `json:"details"`
	}{1, r.TenantID, r.Seq, store.Micros(r.At), r.Category, r.Action, r.ActorType, r.ActorID,
		r.ObjectType, r.ObjectID, r.IP, r.UserAgent, r.RequestID, string(r.Details)}
	return mustJSON(v)
}

// bodyDigest is SHA-256 of a format 2 record's body: what retention may
// remove.
func bodyDigest(r Record) []byte {
	v := struct {
		Action     string `json:"action"`
		ActorType  string `json:"actor_type"`
		ActorID    string `json:"actor_id"`
		ObjectType string `json:"object_type"`
		ObjectID   string `json:"object_id"`
		IP         string `json:"ip"`
		UserAgent  string `json:"user_agent"`
		RequestID  string `json:"request_id"`
		Details    string `json:"details"`
	}{r.Action, r.ActorType, r.ActorID, r.ObjectType, r.ObjectID, r.IP, r.UserAgent, r.RequestID, string(r.Details)}
	sum := sha256.Sum256(mustJSON(v))
	return sum[:]
}

// leafV2 is the leaf of a format 2 record: the record hash of its header,
// which carries the body's digest.
func leafV2(r Record, body []byte) tlog.Hash {
	v := struct {
		V        int    `json:"v"`
		TenantID string `json:"tenant_id"`
		Seq      int64  `json:"seq"`
		At       int64  `json:"at"`
		Category string `json:"category"`
		Body     string `json:"body"`
	}{2, r.TenantID, r.Seq, store.Micros(r.At), r.Category, hex.EncodeToString(body)}
	return tlog.RecordHash(mustJSON(v))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // strings and integers only: cannot fail
		panic(fmt.Sprintf("audit: canonical encoding: %v", err))
	}
	return b
}

// chainHash links a leaf to the chain hash before it.
func chainHash(prev []byte, leaf tlog.Hash) []byte {
	h := sha256.New()
	h.Write([]byte("relais-audit-chain-v1"))
	h.Write(prev)
	h.Write(leaf[:])
	return h.Sum(nil)
}

// checkLeaf recomputes a record's leaf from what is stored and returns it,
// or a reason the record does not match its stored leaf hash. A purged
// record is checked by its header and stored body digest; a kept one by its
// whole content.
func checkLeaf(r Record) (tlog.Hash, string) {
	var leaf tlog.Hash
	switch {
	case r.BodyHash == nil && r.PurgedAt != nil:
		return leaf, fmt.Sprintf("event %d was altered: it has no body and no body digest", r.Seq)
	case r.BodyHash == nil:
		leaf = tlog.RecordHash(canonicalV1(r))
	case r.PurgedAt != nil:
		leaf = leafV2(r, r.BodyHash)
	default:
		body := bodyDigest(r)
		if !bytes.Equal(body, r.BodyHash) {
			return leaf, fmt.Sprintf("event %d was altered: its content does not match its body digest", r.Seq)
		}
		leaf = leafV2(r, body)
	}
	if !bytes.Equal(leaf[:], r.LeafHash) {
		return leaf, fmt.Sprintf("event %d was altered: its content does not match its leaf hash", r.Seq)
	}
	return leaf, ""
}
