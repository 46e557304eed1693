package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"
)

// HubPublishConfig says where a hub publishes its signed fleet
// checkpoints: an S3-compatible bucket with object lock, each checkpoint
// kept in compliance mode for Retention (docs/hub.md). With no bucket,
// nothing is published.
type HubPublishConfig struct {
	// Endpoint is the S3 server's host:port.
	Endpoint string `yaml:"endpoint,omitempty"`
	// Bucket must exist with object lock enabled: the hub refuses to start
	// otherwise, since a checkpoint in it could be overwritten or deleted.
	Bucket string `yaml:"bucket,omitempty"`
	// Region is the bucket's region; us-east-1 when unset.
	Region string `yaml:"region,omitempty"`
	// AccessKeyID names the S3 credentials; the secret key comes from
	// SecretKeyFile or SecretKeyEnv, never from the file itself.
	AccessKeyID   string `yaml:"access_key_id,omitempty"`
	SecretKeyFile string `yaml:"secret_key_file,omitempty"`
	SecretKeyEnv  string `yaml:"secret_key_env,omitempty"`
	// Retention is how long the bucket must refuse to overwrite or delete
	// a published checkpoint; a year when unset.
	Retention *Duration `yaml:"retention,omitempty"`
	// TLS says whether to speak https to the endpoint (true when unset;
	// false is for a loopback endpoint only). CAFile, when set, is the CA
	// that issued the server's certificate instead of the system's.
	TLS    *bool  `yaml:"tls,omitempty"`
	CAFile string `yaml:"ca_file,omitempty"`
}

const (
	defaultPublishRetention = 365 * 24 * time.Hour
	// minPublishRetention: a shorter lock lets a fleet checkpoint be
	// deleted before an auditor could have pinned it.
	minPublishRetention  = time.Hour
	maxPublishRetention  = 100 * 365 * 24 * time.Hour
	defaultPublishRegion = "us-east-1"
)

// bucketNameRE is S3's bucket naming rule (3 to 63 lowercase letters,
// digits, dots and hyphens, starting and ending with a letter or digit).
var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Enabled says whether the hub publishes its fleet checkpoints.
func (c HubPublishConfig) Enabled() bool { return c.Bucket != "" || c.Endpoint != "" }

// RetentionPeriod is how long each published checkpoint is locked.
func (c HubPublishConfig) RetentionPeriod() time.Duration {
	return orDuration(c.Retention, defaultPublishRetention)
}

// RegionName is the bucket's region.
func (c HubPublishConfig) RegionName() string {
	if c.Region == "" {
		return defaultPublishRegion
	}
	return c.Region
}

// UseTLS says whether to speak https to the endpoint.
func (c HubPublishConfig) UseTLS() bool { return c.TLS == nil || *c.TLS }

// SecretKey reads the S3 secret key from secret_key_file (trailing
// newlines are not part of it) or secret_key_env; an empty one is an
// error that says so.
func (c HubPublishConfig) SecretKey() (string, error) {
	switch {
	case c.SecretKeyFile != "":
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return "", fmt.Errorf("hub.publish.secret_key_file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("hub.publish.secret_key_file: %s is empty; write the bucket's secret access key in it (one line)", c.SecretKeyFile)
		}
		return s, nil
	case c.SecretKeyEnv != "":
		s := os.Getenv(c.SecretKeyEnv)
		if s == "" {
			return "", fmt.Errorf("hub.publish.secret_key_env: %s is unset or empty in interlock's environment; set it where the hub starts (the unit's EnvironmentFile=)", c.SecretKeyEnv)
		}
		return s, nil
	}
	return "", fmt.Errorf("hub.publish: no secret_key_file or secret_key_env")
}

// validate checks hub.publish; the hub section calls it.
func (c *HubPublishConfig) validate(l *errorList) {
	const key = "hub.publish"
	if !c.Enabled() {
		return
	}
	host, _, err := net.SplitHostPort(c.Endpoint)
	switch {
	case c.Endpoint == "":
		l.add(key+".endpoint", "is required with a bucket: the S3 server's host:port, such as s3.eu-west-1.amazonaws.com:443")
	case err != nil || host == "" || strings.Contains(c.Endpoint, "/"):
		l.add(key+".endpoint", quote(c.Endpoint)+" is not host:port (write the server's name and port, no scheme: tls says https)")
	case !c.UseTLS():
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			l.add(key+".tls", "false is accepted for a loopback endpoint only: over plain http the checkpoints and the bucket's answers about their locks could be changed on the way")
		}
	}
	switch {
	case c.Bucket == "":
		l.add(key+".bucket", "is required: a bucket created with object lock enabled")
	case !bucketNameRE.MatchString(c.Bucket) || strings.Contains(c.Bucket, ".."):
		l.add(key+".bucket", quote(c.Bucket)+" is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)")
	}
	if c.Region != "" && (len(c.Region) > 64 || strings.ContainsFunc(c.Region, func(r rune) bool { return r <= ' ' || r == '/' || r > 0x7e })) {
		l.add(key+".region", quote(c.Region)+" is not a region name, such as eu-west-1")
	}
	if c.AccessKeyID == "" {
		l.add(key+".access_key_id", "is required: the access key id of credentials that may put objects with retention in the bucket")
	}
	switch {
	case c.SecretKeyFile != "" && c.SecretKeyEnv != "":
		l.add(key+".secret_key_env", "give secret_key_file or secret_key_env, not both")
	case c.SecretKeyFile != "":
		absPath(l, key+".secret_key_file", c.SecretKeyFile, true)
	case c.SecretKeyEnv != "":
		if !envName(c.SecretKeyEnv) {
			l.add(key+".secret_key_env", quote(c.SecretKeyEnv)+" is not an environment variable name")
		}
	default:
		l.add(key+".secret_key_file", "is required (or secret_key_env): where the hub reads the bucket's secret access key")
	}
	if c.Retention != nil {
		if r := time.Duration(*c.Retention); r < minPublishRetention || r > maxPublishRetention {
			l.add(key+".retention", fmt.Sprintf("%s is outside %s to %s: each checkpoint is locked that long, in compliance mode, which nobody can shorten", r, minPublishRetention, maxPublishRetention))
		}
	}
	if c.CAFile != "" {
		absPath(l, key+".ca_file", c.CAFile, true)
	}
}
