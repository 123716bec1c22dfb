package sftpd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/relais-dev/relais/internal/keys"
)

func testCipher(t *testing.T, tenant string) *keys.FieldCipher {
	t.Helper()
	dk, err := keys.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	fc, err := keys.NewFieldCipher(tenant, 1, dk)
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

func seal(t *testing.T, ks keySealer, key string, pt []byte, writes int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newSealWriter(&buf, ks, key)
	if err != nil {
		t.Fatal(err)
	}
	step := max(1, len(pt)/max(1, writes))
	for p := pt; len(p) > 0; {
		n := min(step, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSealRoundTrip: every size around the chunk boundaries decrypts to
// the plaintext, at any offset, and the stored size is as computed.
func TestSealRoundTrip(t *testing.T) {
	fc := testCipher(t, "t1")
	for _, n := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		pt := make([]byte, n)
		rand.Read(pt)
		ct := seal(t, fc, "t1/f1", pt, 7)
		hdr := int64(len(ct)) - sealedSize(0, int64(n))
		if hdr <= int64(len(sealMagic)) {
			t.Fatalf("size %d: stored %d bytes, header %d", n, len(ct), hdr)
		}
		if bytes.Contains(ct, pt[:min(n, 64)]) && n >= 16 {
			t.Fatalf("size %d: plaintext visible in the stored file", n)
		}
		or, err := newOpenReader(bytes.NewReader(ct), int64(len(ct)), fc, "t1/f1")
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if or.Size() != int64(n) {
			t.Fatalf("size %d: reader says %d", n, or.Size())
		}
		got, err := io.ReadAll(io.NewSectionReader(or, 0, or.Size()))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("size %d: read back %d bytes, err %v", n, len(got), err)
		}
		for _, off := range []int{0, n / 3, n - 1, chunkSize - 5} {
			if off < 0 || off >= n {
				continue
			}
			p := make([]byte, min(100, n-off))
			if k, err := or.ReadAt(p, int64(off)); (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(p[:k], pt[off:off+k]) {
				t.Fatalf("size %d: ReadAt(%d) = %d, %v", n, off, k, err)
			}
		}
	}
}

// TestSealRefusesTampering: truncation (even at a chunk boundary), a
// flipped bit, another blob key (a file moved) and another tenant's key
// all fail to open.
func TestSealRefusesTampering(t *testing.T) {
	fc := testCipher(t, "t1")
	pt := make([]byte, 2*chunkSize+100)
	rand.Read(pt)
	ct := seal(t, fc, "t1/f1", pt, 3)
	readAll := func(b []byte, ks keySealer, key string) error {
		or, err := newOpenReader(bytes.NewReader(b), int64(len(b)), ks, key)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(io.NewSectionReader(or, 0, or.Size()))
		return err
	}
	hdr := len(ct) - int(sealedSize(0, int64(len(pt))))
	cases := map[string]error{
		"truncated at a chunk boundary": readAll(ct[:hdr+2*(chunkSize+tagSize)], fc, "t1/f1"),
		"truncated mid-chunk":           readAll(ct[:len(ct)-50], fc, "t1/f1"),
		"other blob key":                readAll(ct, fc, "t1/f2"),
		"other tenant key":              readAll(ct, testCipher(t, "t2"), "t1/f1"),
		"empty":                         readAll(nil, fc, "t1/f1"),
	}
	flipped := bytes.Clone(ct)
	flipped[hdr+10] ^= 1
	cases["flipped bit in the first chunk"] = readAll(flipped, fc, "t1/f1")
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if err := readAll(ct, fc, "t1/f1"); err != nil {
		t.Fatalf("intact file: %v", err)
	}
}
