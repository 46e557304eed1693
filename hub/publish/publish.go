// Package publish puts a hub's signed fleet checkpoints in an
// S3-compatible bucket under object lock in compliance mode, so that an
// auditor can pin one checkpoint for the whole fleet and nobody, the
// hub's operators included, can take it back before its retention ends
// (docs/hub.md, "The fleet log").
package publish

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/journal/evidence"
)

// Object names in the bucket.
const (
	// CheckpointPrefix starts each fleet checkpoint's object name; the
	// size follows, zero-padded to 20 digits so that names sort as sizes.
	CheckpointPrefix = "fleet/checkpoints/"
	// LatestObject is the newest fleet checkpoint, replaced each time and
	// not locked: a pointer for auditors, never evidence by itself.
	LatestObject = "fleet/latest"
)

// CheckpointObject is the object name of the fleet checkpoint of a size.
func CheckpointObject(size int64) string { return fmt.Sprintf("%s%020d", CheckpointPrefix, size) }

// Options are what New needs; FromConfig makes them from hub.publish.
type Options struct {
	Endpoint    string // host:port
	Bucket      string
	Region      string
	AccessKeyID string
	SecretKey   string
	Retention   time.Duration
	TLS         bool
	// RootCAs, when set, are the CAs trusted for the endpoint's
	// certificate instead of the system's.
	RootCAs *x509.CertPool
}

// FromConfig reads the secret key and CA file that c names.
func FromConfig(c config.HubPublishConfig) (Options, error) {
	secret, err := c.SecretKey()
	if err != nil {
		return Options{}, err
	}
	o := Options{Endpoint: c.Endpoint, Bucket: c.Bucket, Region: c.RegionName(), AccessKeyID: c.AccessKeyID,
		SecretKey: secret, Retention: c.RetentionPeriod(), TLS: c.UseTLS()}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return Options{}, fmt.Errorf("hub.publish.ca_file: %w", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return Options{}, fmt.Errorf("hub.publish.ca_file: %s holds no PEM certificate", c.CAFile)
		}
	}
	return o, nil
}

// Publisher puts fleet checkpoints in one bucket.
type Publisher struct {
	c         *minio.Client
	bucket    string
	retention time.Duration
	now       func() time.Time
}

// ErrNoObjectLock is the error of New for a bucket without object lock.
var ErrNoObjectLock = errors.New("the bucket does not have object lock enabled")

// New connects to the bucket and checks that it has object lock enabled:
// without it the server would take a retention it cannot enforce, and a
// published checkpoint could be overwritten or deleted, so the hub
// refuses to start rather than publish what proves nothing.
func New(ctx context.Context, o Options) (*Publisher, error) {
	if o.Retention <= 0 {
		return nil, fmt.Errorf("publish: retention %s is not positive", o.Retention)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(o.AccessKeyID, o.SecretKey, ""),
		Secure:    o.TLS,
		Region:    o.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %s: %w", o.Endpoint, err)
	}
	p := &Publisher{c: c, bucket: o.Bucket, retention: o.Retention, now: time.Now}
	lock, _, _, _, err := c.GetObjectLockConfig(ctx, o.Bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "ObjectLockConfigurationNotFoundError" {
			return nil, fmt.Errorf("publish: bucket %s at %s: %w (create it with object lock, e.g. aws s3api create-bucket --object-lock-enabled-for-bucket; it cannot be added to a bucket later on every server)", o.Bucket, o.Endpoint, ErrNoObjectLock)
		}
		return nil, fmt.Errorf("publish: bucket %s at %s: reading its object lock configuration: %w", o.Bucket, o.Endpoint, err)
	}
	if lock != "Enabled" {
		return nil, fmt.Errorf("publish: bucket %s at %s: %w (its object lock is %q)", o.Bucket, o.Endpoint, ErrNoObjectLock, lock)
	}
	return p, nil
}

// Publish puts a signed fleet checkpoint in the bucket as
// CheckpointObject(size), locked in compliance mode until now plus the
// retention, checks that the server holds it under that lock, and then
// replaces LatestObject with it. Publishing the same checkpoint again
// (after a restart) is a no-op; another checkpoint of a size already
// published is an error: two fleet checkpoints of one size are a fork.
func (p *Publisher) Publish(ctx context.Context, cp evidence.Checkpoint) error {
	name := CheckpointObject(cp.Size)
	until := p.now().Add(p.retention).UTC().Truncate(time.Second)
	version, later, err := p.firstVersion(ctx, name)
	if err == nil {
		have, err := p.getVersion(ctx, name, version)
		if err != nil {
			return fmt.Errorf("publish: %s/%s: %w", p.bucket, name, err)
		}
		if !bytes.Equal(have, cp.Note) {
			return fmt.Errorf("publish: %s/%s already holds another fleet checkpoint of %d leaves: the fleet log forked, or the bucket is shared with another hub", p.bucket, name, cp.Size)
		}
		if later > 0 {
			// Not every server reports the lock of a version that is no
			// longer the latest (versitygw does not), so say what is known.
			return fmt.Errorf("publish: %s/%s has %d versions or delete markers after the published one: someone wrote over a published fleet checkpoint (the first version, which the lock protects, is intact)", p.bucket, name, later)
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("publish: %s/%s: %w", p.bucket, name, err)
	} else {
		opts := minio.PutObjectOptions{ContentType: "text/plain; charset=utf-8", Mode: minio.Compliance, RetainUntilDate: until, SendContentMd5: true}
		// Never replace: a server that honours If-None-Match refuses a
		// second writer outright.
		opts.SetMatchETagExcept("*")
		info, err := p.c.PutObject(ctx, p.bucket, name, bytes.NewReader(cp.Note), int64(len(cp.Note)), opts)
		if err != nil {
			return fmt.Errorf("publish: put %s/%s: %w", p.bucket, name, err)
		}
		version = info.VersionID
	}
	if err := p.checkLocked(ctx, name, version); err != nil {
		return err
	}
	// latest only moves forward: republishing an older checkpoint (after
	// a restart) must not make it look as if the fleet log shrank.
	if cur, err := p.get(ctx, LatestObject); err == nil && noteSize(cur) >= cp.Size {
		return nil
	}
	opts := minio.PutObjectOptions{ContentType: "text/plain; charset=utf-8", SendContentMd5: true}
	if _, err := p.c.PutObject(ctx, p.bucket, LatestObject, bytes.NewReader(cp.Note), int64(len(cp.Note)), opts); err != nil {
		return fmt.Errorf("publish: put %s/%s: %w", p.bucket, LatestObject, err)
	}
	return nil
}

// checkLocked reads back an object's lock from its headers (HEAD: the
// x-amz-object-lock-* headers; not GetObjectRetention, whose answer not
// every server words as minio-go expects): a server that dropped the lock
// must not pass for one that keeps it.
func (p *Publisher) checkLocked(ctx context.Context, name, version string) error {
	info, err := p.c.StatObject(ctx, p.bucket, name, minio.StatObjectOptions{VersionID: version})
	if err != nil {
		return fmt.Errorf("publish: %s/%s: reading its lock: %w", p.bucket, name, err)
	}
	mode := info.Headers.Get("X-Amz-Object-Lock-Mode")
	until, err := time.Parse(time.RFC3339, info.Headers.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	if mode != string(minio.Compliance) || err != nil || !until.After(p.now()) {
		return fmt.Errorf("publish: %s/%s is not locked in compliance mode after publishing (mode %q, until %q): the server did not keep the lock",
			p.bucket, name, mode, info.Headers.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	}
	return nil
}

// Checkpoint fetches the published fleet checkpoint of a size: in a
// versioned bucket (every bucket with object lock on AWS), its first
// version, the one the lock protects. A later PUT to the same name adds a
// version on such a server instead of being refused, and a DELETE adds a
// delete marker; neither can change or remove the first version.
func (p *Publisher) Checkpoint(ctx context.Context, size int64) ([]byte, error) {
	b, err := p.first(ctx, CheckpointObject(size))
	if err != nil {
		return nil, fmt.Errorf("publish: %s/%s: %w", p.bucket, CheckpointObject(size), err)
	}
	return b, nil
}

// Latest fetches LatestObject.
func (p *Publisher) Latest(ctx context.Context) ([]byte, error) {
	b, err := p.get(ctx, LatestObject)
	if err != nil {
		return nil, fmt.Errorf("publish: %s/%s: %w", p.bucket, LatestObject, err)
	}
	return b, nil
}

// maxCheckpoint bounds what is read back: a fleet checkpoint is a few
// hundred bytes.
const maxCheckpoint = 64 << 10

// first reads the oldest version of an object, or the object where the
// bucket keeps no versions.
func (p *Publisher) first(ctx context.Context, name string) ([]byte, error) {
	version, _, err := p.firstVersion(ctx, name)
	if err != nil {
		return nil, err
	}
	return p.getVersion(ctx, name, version)
}

// firstVersion is the id of an object's oldest version ("" where the
// bucket keeps no versions), and how many versions and delete markers
// came after it.
func (p *Publisher) firstVersion(ctx context.Context, name string) (version string, later int, err error) {
	found, seen := false, 0
	// Versions are listed newest first: the last one is the oldest.
	for o := range p.c.ListObjects(ctx, p.bucket, minio.ListObjectsOptions{Prefix: name, WithVersions: true}) {
		if o.Err != nil {
			return "", 0, o.Err
		}
		if o.Key != name {
			continue
		}
		if !o.IsDeleteMarker {
			version, later, found = o.VersionID, seen, true
		}
		seen++
	}
	if !found {
		return "", 0, minio.ErrorResponse{Code: "NoSuchKey", Message: "no version of " + name + " is in the bucket"}
	}
	if version == "null" {
		version = ""
	}
	return version, later, nil
}

func (p *Publisher) get(ctx context.Context, name string) ([]byte, error) {
	return p.getVersion(ctx, name, "")
}

func (p *Publisher) getVersion(ctx context.Context, name, version string) ([]byte, error) {
	obj, err := p.c.GetObject(ctx, p.bucket, name, minio.GetObjectOptions{VersionID: version})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxCheckpoint+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCheckpoint {
		return nil, fmt.Errorf("object is over %d bytes: not a fleet checkpoint", maxCheckpoint)
	}
	return b, nil
}

// noteSize is the tree size line of a checkpoint note, unverified (only
// to order the pointer LatestObject); -1 when there is none.
func noteSize(b []byte) int64 {
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return -1
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}
