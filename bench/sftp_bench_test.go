package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/sftpd"
)

// The SFTP benchmarks (XFER-1, XFER-3): a 16 MiB file uploaded, then
// downloaded, with Go's SFTP client over loopback SSH (the server's
// algorithms: ML-KEM hybrid, AES-256-GCM), through Relais's server (key
// check, audit events, quota, the file sealed with the tenant key and
// stored, then unsealed) against the reference: a bare pkg/sftp server on
// the same SSH settings that keeps the file in a preallocated buffer
// (pkg/sftp's own InMemHandler copies on every write and is slower than
// Relais, so it would flatter the ratio). The ratio is the
// cost of confinement, encryption at rest and the trail.
//
//	go test -run '^$' -bench SFTP -benchtime 5x -count 3 ./bench/

const sftpBenchSize = 16 << 20

func sftpBenchClient(b *testing.B, addr, user string, signer ssh.Signer, host ssh.PublicKey) (*ssh.Client, *sftp.Client) {
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(host), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Config: ssh.Config{KeyExchanges: sftpd.KeyExchanges(), Ciphers: []string{ssh.CipherAES256GCM}}, Timeout: 10 * time.Second}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	return c, sc
}

func sftpRoundTrip(b *testing.B, sc *sftp.Client, data []byte, up, down string) {
	f, err := sc.Create(up)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	r, err := sc.Open(down)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != int64(len(data)) {
		b.Fatalf("download: %d bytes, %v", n, err)
	}
	_ = r.Close()
}

func BenchmarkSFTPRelais(b *testing.B) {
	ctx := context.Background()
	env := openTenantEnv(b, "", "Acme", "acme")
	db, dir, t := env.db, env.dir, env.tenant
	cfg := config.Default().SFTP
	cfg.MaxFileBytes, cfg.QuotaBytes = 1<<30, 1<<30
	svc := &sftpd.Service{DB: db, Keyring: env.keyring, Tenants: env.tenants, Blobs: sftpd.DirBlobs{Root: filepath.Join(dir, "sftp")}, Config: cfg}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := ssh.NewPublicKey(pub)
	signer, _ := ssh.NewSignerFromKey(priv)
	if _, err := svc.AddAccount(ctx, t.ID, sftpd.NewAccount{Name: "bench", Keys: []string{string(ssh.MarshalAuthorizedKey(spub))}, Allow: []string{"127.0.0.1/32"}}); err != nil {
		b.Fatal(err)
	}
	hostKeys, _, err := sftpd.LoadOrCreateHostKeys(filepath.Join(dir, "ssh"))
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = svc.Serve(sctx, l, hostKeys) }()
	// The download reads a file delivered to /outbox (uploads go to /inbox,
	// which is write-only).
	data := make([]byte, sftpBenchSize)
	rand.Read(data)
	if _, err := svc.Deliver(ctx, t.ID, "bench.bin", bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	c, sc := sftpBenchClient(b, l.Addr().String(), "acme.bench", signer, hostKeys[0].PublicKey())
	defer func() { _ = c.Close() }()
	b.SetBytes(2 * sftpBenchSize)
	b.ResetTimer()
	for range b.N {
		// A temporary name: stored, not imported.
		sftpRoundTrip(b, sc, data, "/inbox/bench.bin.part", "/outbox/bench.bin")
	}
}

func BenchmarkSFTPReferenceInMemory(b *testing.B) {
	hostKeys, _, err := sftpd.LoadOrCreateHostKeys(filepath.Join(b.TempDir(), "ssh"))
	if err != nil {
		b.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := ssh.NewPublicKey(pub)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{Config: ssh.Config{KeyExchanges: sftpd.KeyExchanges(), Ciphers: sftpd.Ciphers(), MACs: sftpd.MACs()},
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), spub.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, io.EOF
		}}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					c, creqs, _ := ch.Accept()
					go func() {
						for r := range creqs {
							_ = r.Reply(r.Type == "subsystem", nil)
							if r.Type == "subsystem" {
								go func() {
									h := &refHandler{}
									rs := sftp.NewRequestServer(c, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
									_ = rs.Serve()
									_ = rs.Close()
								}()
							}
						}
					}()
				}
			}()
		}
	}()
	c, sc := sftpBenchClient(b, l.Addr().String(), "bench", signer, hostKeys[0].PublicKey())
	defer func() { _ = c.Close() }()
	data := make([]byte, sftpBenchSize)
	rand.Read(data)
	b.SetBytes(2 * sftpBenchSize)
	b.ResetTimer()
	for range b.N {
		sftpRoundTrip(b, sc, data, "/bench.bin", "/bench.bin")
	}
}

// refHandler keeps one file in memory, written in place.
type refHandler struct {
	mu   sync.Mutex
	data []byte
}

func (h *refHandler) Fileread(*sftp.Request) (io.ReaderAt, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.NewReader(h.data), nil
}

func (h *refHandler) Filewrite(*sftp.Request) (io.WriterAt, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.data = make([]byte, 0, sftpBenchSize)
	return h, nil
}

func (h *refHandler) WriteAt(p []byte, off int64) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if end := int(off) + len(p); end > len(h.data) {
		h.data = h.data[:end]
	}
	copy(h.data[off:], p)
	return len(p), nil
}

func (h *refHandler) Filecmd(*sftp.Request) error { return nil }

func (h *refHandler) Filelist(*sftp.Request) (sftp.ListerAt, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return refLister{refInfo(len(h.data))}, nil
}

type refLister []os.FileInfo

func (l refLister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	return copy(out, l[off:]), io.EOF
}

type refInfo int

func (r refInfo) Name() string       { return "bench.bin" }
func (r refInfo) Size() int64        { return int64(r) }
func (r refInfo) Mode() os.FileMode  { return 0o600 }
func (r refInfo) ModTime() time.Time { return time.Time{} }
func (r refInfo) IsDir() bool        { return false }
func (r refInfo) Sys() any           { return nil }
