package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ErrNotExist is returned by Target.Get for a missing object.
var ErrNotExist = errors.New("backup object does not exist")

// Target is where backups are stored: a directory or an S3 bucket. Names
// are slash-separated and relative to the target's root. Put is atomic: an
// object is visible under its name only once complete, so a crash leaves
// no partial object.
type Target interface {
	// ID identifies the target (its URL without credentials).
	ID() string
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	Exists(ctx context.Context, name string) (bool, error)
	// List returns the names under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, name string) error
}

// OpenTarget opens a target URL: dir:///absolute/path, or
// s3://bucket/prefix?endpoint=host:port[&region=R][&tls=false][&retries=N] with the
// credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. tls=false
// (plain HTTP) is accepted for a loopback endpoint only.
func OpenTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("backup: target %q is not a URL; use dir:///absolute/path or s3://bucket/prefix?endpoint=host:port", raw)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("backup: target %q: use dir:///absolute/path (three slashes, an absolute path)", raw)
		}
		return &DirTarget{Root: filepath.Clean(u.Path)}, nil
	case "s3":
		return openS3(u)
	default:
		return nil, fmt.Errorf("backup: target %q: unknown scheme; use dir:///absolute/path or s3://bucket/prefix?endpoint=host:port", raw)
	}
}

// DirTarget stores objects as files under Root (created 0700).
type DirTarget struct{ Root string }

// ID is the target's URL.
func (d *DirTarget) ID() string { return "dir://" + filepath.ToSlash(d.Root) }

func (d *DirTarget) path(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("backup: bad object name %q", name)
	}
	return filepath.Join(d.Root, filepath.FromSlash(clean[1:])), nil
}

// Put writes to a temporary file in the same directory, syncs it and
// renames it over the name.
func (d *DirTarget) Put(ctx context.Context, name string, r io.Reader, _ int64) (err error) {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("backup: create %s: %w", filepath.Dir(p), err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if dir, derr := os.Open(filepath.Dir(p)); derr == nil {
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// Get opens an object.
func (d *DirTarget) Get(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p) // #nosec G304 -- p is under Root, checked by d.path
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, name)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read %s: %w", name, err)
	}
	return f, nil
}

// Exists reports whether an object exists.
func (d *DirTarget) Exists(_ context.Context, name string) (bool, error) {
	p, err := d.path(name)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// List walks the directory under prefix; temporary files are skipped.
func (d *DirTarget) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(d.Root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(d.Root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, prefix) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", d.ID(), err)
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes an object (missing is not an error).
func (d *DirTarget) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: delete %s: %w", name, err)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// S3Target stores objects in an S3-compatible bucket under a prefix. A
// PutObject is atomic on S3 (the object appears complete or not at all);
// large objects go up in parts, which minio-go retries.
type S3Target struct {
	client *minio.Client
	bucket string
	prefix string
	id     string
}

func openS3(u *url.URL) (*S3Target, error) {
	q := u.Query()
	endpoint := q.Get("endpoint")
	if endpoint == "" || u.Host == "" {
		return nil, errors.New("backup: s3 target: use s3://bucket/prefix?endpoint=host:port")
	}
	secure := q.Get("tls") != "false"
	if !secure {
		host, _, err := net.SplitHostPort(endpoint)
		if err != nil {
			host = endpoint
		}
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("backup: s3 target: tls=false is allowed for a loopback endpoint only")
		}
	}
	ak, sk := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if ak == "" || sk == "" {
		return nil, errors.New("backup: s3 target: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	retries := 5
	if r := q.Get("retries"); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 || n > 10 {
			return nil, errors.New("backup: s3 target: retries must be 1 to 10")
		}
		retries = n
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(ak, sk, os.Getenv("AWS_SESSION_TOKEN")),
		Secure: secure, Region: q.Get("region"), MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("backup: s3 target: %w", err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	id := "s3://" + u.Host + "/" + prefix + "?endpoint=" + endpoint
	return &S3Target{client: c, bucket: u.Host, prefix: prefix, id: id}, nil
}

// ID is the target's URL without credentials.
func (s *S3Target) ID() string { return s.id }

// Put uploads an object.
func (s *S3Target) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+name, r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream", PartSize: 16 << 20,
	})
	if err != nil {
		return fmt.Errorf("backup: upload %s to %s: %w", name, s.id, err)
	}
	return nil
}

// Get downloads an object.
func (s *S3Target) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	o, err := s.client.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("backup: download %s from %s: %w", name, s.id, err)
	}
	if _, err := o.Stat(); err != nil {
		_ = o.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, name)
		}
		return nil, fmt.Errorf("backup: download %s from %s: %w", name, s.id, err)
	}
	return o, nil
}

// Exists reports whether an object exists.
func (s *S3Target) Exists(ctx context.Context, name string) (bool, error) {
	_, err := s.client.StatObject(ctx, s.bucket, s.prefix+name, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false, nil
	}
	return false, fmt.Errorf("backup: stat %s on %s: %w", name, s.id, err)
}

// List lists the objects under prefix.
func (s *S3Target) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("backup: list %s: %w", s.id, o.Err)
		}
		out = append(out, strings.TrimPrefix(o.Key, s.prefix))
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes an object.
func (s *S3Target) Delete(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("backup: delete %s on %s: %w", name, s.id, err)
	}
	return nil
}
