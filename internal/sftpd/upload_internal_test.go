package sftpd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

type memBlob struct{ bytes.Buffer }

func (m *memBlob) Commit() error { return nil }
func (m *memBlob) Abort() error  { return nil }

// TestUploadReassemblesOutOfOrderWrites: writes ahead of the stream are
// held and flushed in order; a rewrite behind the stream, too much held
// data, and a write past the size limit fail the upload.
func TestUploadReassemblesOutOfOrderWrites(t *testing.T) {
	fc := testCipher(t, "t1")
	newUpload := func(limit int64) (*upload, *memBlob) {
		mb := &memBlob{}
		sw, err := newSealWriter(mb, fc, "t1/f1")
		if err != nil {
			t.Fatal(err)
		}
		sess := &session{acct: Account{MaxFileBytes: limit}}
		return &upload{sess: sess, w: &encWriter{bw: mb, sw: sw, sum: sha256.New(), key: "t1/f1"}, limit: limit, ahead: map[int64][]byte{}}, mb
	}
	data := make([]byte, 10*32<<10+123)
	rand.Read(data)
	u, mb := newUpload(1 << 30)
	// Packets of 32 KiB, sent in the order 3, 1, 0, 2, 5, 4, ...
	var offs []int64
	for off := int64(0); off < int64(len(data)); off += 32 << 10 {
		offs = append(offs, off)
	}
	for i := 0; i+1 < len(offs); i += 2 {
		offs[i], offs[i+1] = offs[i+1], offs[i]
	}
	for _, off := range offs {
		end := min(off+32<<10, int64(len(data)))
		if _, err := u.WriteAt(data[off:end], off); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
	if len(u.ahead) != 0 || u.off != int64(len(data)) {
		t.Fatalf("held %d, stream at %d", len(u.ahead), u.off)
	}
	if err := u.w.commit(); err != nil {
		t.Fatal(err)
	}
	or, err := newOpenReader(bytes.NewReader(mb.Bytes()), int64(mb.Len()), fc, "t1/f1")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(io.NewSectionReader(or, 0, or.Size()))
	if !bytes.Equal(got, data) {
		t.Fatal("reassembled file differs")
	}

	u, _ = newUpload(1 << 30)
	_, _ = u.WriteAt(data[:100], 0)
	if _, err := u.WriteAt(data[:10], 50); !errors.Is(err, errOrder) {
		t.Fatalf("rewrite: %v", err)
	}
	u, _ = newUpload(1 << 30)
	if _, err := u.WriteAt(make([]byte, maxAhead+1), 10); !errors.Is(err, errOrder) {
		t.Fatalf("too much ahead: %v", err)
	}
	u, _ = newUpload(1000)
	if _, err := u.WriteAt(make([]byte, 600), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.WriteAt(make([]byte, 600), 600); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := u.WriteAt(make([]byte, 1), 1200); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("after failing: %v", err)
	}
}
