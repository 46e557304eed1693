package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/test/e2e/s3test"
	"github.com/interlock/interlock/test/testenv"
)

// startS3 starts versitygw with two buckets: "fleet" with object lock,
// "plain" without. It returns the server and a client with the root
// credentials, which plays whoever would take a checkpoint back.
func startS3(t *testing.T, opts s3test.Options) (*s3test.Server, *minio.Client) {
	t.Helper()
	_, err := s3test.Binary()
	testenv.Require(t, "versitygw (an S3 server with object lock)", err)
	s, err := s3test.Start(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c, err := minio.New(s.Addr(), &minio.Options{Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""), Region: s3test.Region})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.MakeBucket(ctx, "fleet", minio.MakeBucketOptions{Region: s3test.Region, ObjectLocking: true}); err != nil {
		t.Fatalf("make bucket with object lock: %v\n%s", err, s.Log())
	}
	if err := c.MakeBucket(ctx, "plain", minio.MakeBucketOptions{Region: s3test.Region}); err != nil {
		t.Fatalf("make bucket: %v\n%s", err, s.Log())
	}
	return s, c
}

func options(s *s3test.Server, bucket string) Options {
	return Options{Endpoint: s.Addr(), Bucket: bucket, Region: s3test.Region, AccessKeyID: s3test.AccessKey,
		SecretKey: s3test.SecretKey, Retention: time.Hour}
}

func fleetCheckpoint(t *testing.T, s note.Signer, size int64, leaf string) evidence.Checkpoint {
	t.Helper()
	cp, err := evidence.SignFleetCheckpoint(s, "hub1", size, tlog.RecordHash([]byte(leaf)), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestPublishUnderObjectLock publishes fleet checkpoints to a real S3
// server with object lock, then tries, with the bucket's root
// credentials, to overwrite and delete one. Without versioning the server
// refuses both; with versioning (as on AWS) it refuses to delete or
// change the locked version, and Checkpoint still reads it.
func TestPublishUnderObjectLock(t *testing.T) {
	for _, versioning := range []bool{false, true} {
		name := "unversioned"
		if versioning {
			name = "versioned"
		}
		t.Run(name, func(t *testing.T) { testPublish(t, versioning) })
	}
}

func testPublish(t *testing.T, versioning bool) {
	s, root := startS3(t, s3test.Options{Versioning: versioning})
	ctx := context.Background()
	skey, _, err := note.GenerateKey(rand.Reader, "fleet.example")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := New(ctx, options(s, "plain")); !errors.Is(err, ErrNoObjectLock) || !strings.Contains(err.Error(), "bucket plain") {
		t.Fatalf("a bucket without object lock: got %v, want ErrNoObjectLock", err)
	}
	p, err := New(ctx, options(s, "fleet"))
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Log())
	}
	cp3, cp5 := fleetCheckpoint(t, signer, 3, "a"), fleetCheckpoint(t, signer, 5, "b")
	// cp3 again: a hub that restarts publishes its newest again.
	for _, cp := range []evidence.Checkpoint{cp3, cp5, cp3} {
		if err := p.Publish(ctx, cp); err != nil {
			t.Fatalf("publish %d: %v\n%s", cp.Size, err, s.Log())
		}
	}
	if b, err := p.Checkpoint(ctx, 3); err != nil || !bytes.Equal(b, cp3.Note) {
		t.Fatalf("checkpoint 3: %q, %v", b, err)
	}
	if b, err := p.Latest(ctx); err != nil || !bytes.Equal(b, cp5.Note) {
		t.Fatalf("latest is not the newest checkpoint: %q, %v", b, err)
	}
	if err := p.Publish(ctx, fleetCheckpoint(t, signer, 3, "forked")); err == nil || !strings.Contains(err.Error(), "already holds another fleet checkpoint") {
		t.Fatalf("another checkpoint of size 3: %v", err)
	}
	info, err := root.StatObject(ctx, "fleet", CheckpointObject(3), minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Headers.Get("X-Amz-Object-Lock-Mode") != "COMPLIANCE" {
		t.Fatalf("checkpoint 3 is not in compliance mode: %v", info.Headers)
	}

	// Whoever holds the bucket's root credentials tries to take checkpoint
	// 3 back.
	obj := CheckpointObject(3)
	forged := []byte("forged\n")
	_, err = root.PutObject(ctx, "fleet", obj, bytes.NewReader(forged), int64(len(forged)), minio.PutObjectOptions{})
	if !versioning && (err == nil || !strings.Contains(err.Error(), "object lock")) {
		t.Errorf("overwriting a locked checkpoint: got %v, want a refusal by object lock", err)
	}
	if versioning && err != nil {
		t.Errorf("a PUT over a locked object in a versioned bucket adds a version; got %v", err)
	}
	for _, o := range []minio.RemoveObjectOptions{{VersionID: info.VersionID}, {VersionID: info.VersionID, GovernanceBypass: true}} {
		if err := root.RemoveObject(ctx, "fleet", obj, o); err == nil || !strings.Contains(err.Error(), "object lock") {
			t.Errorf("deleting the locked checkpoint (%+v): got %v, want a refusal by object lock", o, err)
		}
	}
	err = root.RemoveObject(ctx, "fleet", obj, minio.RemoveObjectOptions{})
	if !versioning && (err == nil || !strings.Contains(err.Error(), "object lock")) {
		t.Errorf("deleting a locked checkpoint: got %v, want a refusal by object lock", err)
	}
	if b, err := p.Checkpoint(ctx, 3); err != nil || !bytes.Equal(b, cp3.Note) {
		t.Fatalf("checkpoint 3 after the attempts: %q, %v\n%s", b, err, s.Log())
	}
	// Republishing finds the locked first version, and says when someone
	// wrote over it.
	err = p.Publish(ctx, cp3)
	if !versioning && err != nil {
		t.Fatalf("publish 3 again after the attempts: %v", err)
	}
	if versioning && (err == nil || !strings.Contains(err.Error(), "has 2 versions or delete markers after the published one")) {
		t.Fatalf("publish 3 again after a PUT and a DELETE over it: got %v", err)
	}
	// fleet/latest is a pointer, not evidence: it is not locked.
	if _, err := root.PutObject(ctx, "fleet", LatestObject, bytes.NewReader(forged), int64(len(forged)), minio.PutObjectOptions{}); err != nil {
		t.Errorf("overwriting fleet/latest: %v", err)
	}
}
