package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Self-signed certificate parameters.
const (
	// SelfSignedValidity is how long a new self-signed certificate is valid.
	SelfSignedValidity = 90 * 24 * time.Hour
	// SelfSignedRenewBefore is how long before expiry a self-signed
	// certificate is replaced.
	SelfSignedRenewBefore = 7 * 24 * time.Hour
	// SelfSignedCertFile and SelfSignedKeyFile are the paths of the
	// self-signed certificate and key, relative to the data directory.
	SelfSignedCertFile = "tls/selfsigned.crt"
	SelfSignedKeyFile  = "tls/selfsigned.key"
)

// selfSignedBackdate is how far before now a new self-signed certificate
// becomes valid, so that clients whose clock is slightly behind accept it.
const selfSignedBackdate = time.Hour

// DefaultSelfSignedHosts returns the names a self-signed certificate covers
// when no host is given: 127.0.0.1, ::1 and localhost (a fresh slice).
func DefaultSelfSignedHosts() []string {
	return []string{"127.0.0.1", "::1", "localhost"}
}

// Fingerprint returns the SHA-256 digest of a DER certificate as uppercase
// hex bytes separated by colons ("AB:CD:..."), the form browsers and
// `openssl x509 -fingerprint -sha256` show.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	b.Grow(len(h) + len(h)/2)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// LoadKeyPair loads a PEM certificate chain and its PEM private key (PKCS#8,
// SEC 1 or PKCS#1), checks them against the policy (matching key, ECDSA or
// RSA >= 2048 bits, valid now) and returns the certificate, with Leaf set,
// and its fingerprint. Every error names the file and what to do.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, string, error) {
	return loadKeyPair(certFile, keyFile, time.Now())
}

func loadKeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, string, error) {
	const omit = "pass --tls-cert/--tls-key or omit both for a self-signed certificate"
	certPEM, err := os.ReadFile(certFile) // #nosec G304 -- the operator names the certificate file (--tls-cert / config)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: no such file; %s", certFile, omit)
		}
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: %w; check the path and that relais may read it", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile) // #nosec G304 -- the operator names the key file (--tls-key / config)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, "", fmt.Errorf("tls key file %s: no such file; %s", keyFile, omit)
		}
		return tls.Certificate{}, "", fmt.Errorf("tls key file %s: %w; check the path and that relais may read it", keyFile, err)
	}
	switch b, _ := pem.Decode(certPEM); {
	case b == nil:
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: no PEM data; pass the certificate in PEM form (leaf first, then intermediates)", certFile)
	case b.Type != "CERTIFICATE":
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: its first PEM block is %q, not CERTIFICATE; were --tls-cert and --tls-key swapped?", certFile, b.Type)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("tls key file %s is not the key of cert file %s: %w; pass the PEM private key that was issued with this certificate", keyFile, certFile, err)
	}
	leaf, err := checkKeyPair(&cert)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: certificate expired on %s; install a renewed certificate, or omit --tls-cert/--tls-key for a self-signed one", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, "", fmt.Errorf("tls cert file %s: certificate is not valid before %s; check the system clock or wait until then", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, Fingerprint(cert.Certificate[0]), nil
}

// LoadOrCreateSelfSigned returns the self-signed certificate kept in
// dir/tls/selfsigned.crt and dir/tls/selfsigned.key, creating a new one when
// the files are missing or unreadable as a key pair, when the certificate
// expires within [SelfSignedRenewBefore] (or has expired, or is not yet
// valid) by now(), when it does not cover exactly hosts, or when the key
// file is readable by group or others. created reports whether a new
// certificate was written; fingerprint is its [Fingerprint].
//
// hosts are IP addresses or DNS names; nil or empty means
// [DefaultSelfSignedHosts]. A new certificate has an ECDSA P-256 key, a
// random 128-bit serial, the hosts as subject alternative names, key usage
// digitalSignature and extended key usage serverAuth, and is valid until
// [SelfSignedValidity] after now() (and from an hour before now(), for
// clients whose clock is a little behind). The key is written with mode 0600 and
// both files are replaced atomically. now nil means time.Now.
func LoadOrCreateSelfSigned(dir string, hosts []string, now func() time.Time) (cert tls.Certificate, fingerprint string, created bool, err error) {
	if now == nil {
		now = time.Now
	}
	if len(hosts) == 0 {
		hosts = DefaultSelfSignedHosts()
	}
	names, err := parseHosts(hosts)
	if err != nil {
		return tls.Certificate{}, "", false, err
	}
	certPath := filepath.Join(dir, filepath.FromSlash(SelfSignedCertFile))
	keyPath := filepath.Join(dir, filepath.FromSlash(SelfSignedKeyFile))
	t := now()

	cert, ok, err := loadSelfSigned(certPath, keyPath, names, t)
	if err != nil {
		return tls.Certificate{}, "", false, err
	}
	if ok {
		return cert, Fingerprint(cert.Certificate[0]), false, nil
	}

	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("self-signed tls certificate: create directory: %w; check that the data directory %s is writable", err, dir)
	}
	certPEM, keyPEM, err := newSelfSigned(names, t)
	if err != nil {
		return tls.Certificate{}, "", false, err
	}
	// Key first: a crash between the two renames leaves a pair that does
	// not match, which the next start replaces.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("self-signed tls key %s: %w; check that the data directory is writable", keyPath, err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("self-signed tls certificate %s: %w; check that the data directory is writable", certPath, err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("self-signed tls certificate: reload the new pair: %w", err)
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("self-signed tls certificate: parse the new certificate: %w", err)
	}
	return cert, Fingerprint(cert.Certificate[0]), true, nil
}

// loadSelfSigned returns the stored self-signed pair and true when it can be
// kept. A missing, damaged, stale or exposed pair gives false and no error;
// only failures to read existing files are errors, so nothing is overwritten
// that could not be inspected.
func loadSelfSigned(certPath, keyPath string, names hostSet, now time.Time) (tls.Certificate, bool, error) {
	certPEM, err := os.ReadFile(certPath) // #nosec G304 -- fixed file name inside the operator's data directory
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false, nil
	}
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("self-signed tls certificate %s: %w; check the file's permissions or remove it to have a new one made", certPath, err)
	}
	keyInfo, err := os.Stat(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false, nil
	}
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("self-signed tls key %s: %w; check the file's permissions or remove it to have a new one made", keyPath, err)
	}
	if runtime.GOOS != "windows" && keyInfo.Mode().Perm()&0o077 != 0 {
		// Others could have read the key: do not keep using it.
		return tls.Certificate{}, false, nil
	}
	keyPEM, err := os.ReadFile(keyPath) // #nosec G304 -- fixed file name inside the operator's data directory, checked above to be closed to group and others
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("self-signed tls key %s: %w; check the file's permissions or remove it to have a new one made", keyPath, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, false, nil
	}
	cert.Leaf = leaf
	pub, isECDSA := leaf.PublicKey.(*ecdsa.PublicKey)
	switch {
	case !isECDSA || pub.Curve != elliptic.P256():
		return tls.Certificate{}, false, nil
	case now.Before(leaf.NotBefore), !now.Before(leaf.NotAfter.Add(-SelfSignedRenewBefore)):
		return tls.Certificate{}, false, nil
	case !slices.Equal(certHosts(leaf).keys(), names.keys()):
		return tls.Certificate{}, false, nil
	}
	return cert, true, nil
}

func newSelfSigned(names hostSet, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed tls certificate: generate ECDSA P-256 key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	cn := "relais self-signed"
	if len(names.dns) > 0 {
		cn = names.dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Relais self-signed"}},
		NotBefore:             now.Add(-selfSignedBackdate),
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names.dns,
	}
	for _, ip := range names.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed tls certificate: create: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed tls certificate: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// randomSerial returns a random, positive, non-zero 128-bit serial number.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("self-signed tls certificate: serial number: %w", err)
		}
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
}

// hostSet is a normalised set of certificate names.
type hostSet struct {
	dns []string     // lower case, no trailing dot
	ips []netip.Addr // unmapped, no zone
}

// keys returns the set as sorted, deduplicated strings, for comparison.
func (h hostSet) keys() []string {
	k := make([]string, 0, len(h.dns)+len(h.ips))
	for _, d := range h.dns {
		k = append(k, "dns:"+d)
	}
	for _, ip := range h.ips {
		k = append(k, "ip:"+ip.String())
	}
	slices.Sort(k)
	return slices.Compact(k)
}

func parseHosts(hosts []string) (hostSet, error) {
	var h hostSet
	for _, raw := range hosts {
		s := strings.TrimSpace(raw)
		s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if ip, err := netip.ParseAddr(s); err == nil {
			if ip.Zone() != "" {
				return hostSet{}, fmt.Errorf("self-signed tls certificate: host %q has an IPv6 zone, which cannot appear in a certificate; remove the %%zone part", raw)
			}
			ip = ip.Unmap()
			if !slices.Contains(h.ips, ip) {
				h.ips = append(h.ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(s, "."))
		if !validDNSName(name, true) {
			return hostSet{}, fmt.Errorf("self-signed tls certificate: host %q is neither an IP address nor a valid DNS name; fix the list of hosts", raw)
		}
		if !slices.Contains(h.dns, name) {
			h.dns = append(h.dns, name)
		}
	}
	return h, nil
}

func certHosts(leaf *x509.Certificate) hostSet {
	var h hostSet
	for _, d := range leaf.DNSNames {
		h.dns = append(h.dns, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			h.ips = append(h.ips, a.Unmap())
		}
	}
	return h
}

// validDNSName reports whether name (lower case, no trailing dot) is a
// host name of letters, digits and hyphens in labels of 1 to 63 characters,
// at most 253 in all; wildcard allows a leading "*." label.
func validDNSName(name string, wildcard bool) bool {
	if wildcard {
		name = strings.TrimPrefix(name, "*.")
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || 'A' <= c && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so readers see the old or the new content, whole.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // #nosec G304 -- the directory of the file just written, opened read-only only to fsync it
		_ = d.Sync() // best effort: make the rename durable
		_ = d.Close()
	}
	return nil
}
