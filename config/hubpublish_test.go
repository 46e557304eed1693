package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHubPublishValidate(t *testing.T) {
	f := false
	ok := HubPublishConfig{Endpoint: "s3.example.com:443", Bucket: "fleet-checkpoints", AccessKeyID: "AK", SecretKeyFile: "/etc/interlock/s3.secret"}
	for _, c := range []struct {
		name   string
		change func(*HubPublishConfig)
		want   string // "" for valid
	}{
		{"valid", func(*HubPublishConfig) {}, ""},
		{"off", func(c *HubPublishConfig) { *c = HubPublishConfig{} }, ""},
		{"loopback without tls", func(c *HubPublishConfig) { c.Endpoint, c.TLS = "127.0.0.1:7070", &f }, ""},
		{"no endpoint", func(c *HubPublishConfig) { c.Endpoint = "" }, "hub.publish.endpoint: is required"},
		{"a URL endpoint", func(c *HubPublishConfig) { c.Endpoint = "https://s3.example.com:443" }, "is not host:port"},
		{"plain http far away", func(c *HubPublishConfig) { c.TLS = &f }, "hub.publish.tls: false is accepted for a loopback endpoint only"},
		{"no bucket", func(c *HubPublishConfig) { c.Bucket = "" }, "hub.publish.bucket: is required"},
		{"bad bucket", func(c *HubPublishConfig) { c.Bucket = "Fleet_Bucket" }, "is not an S3 bucket name"},
		{"no access key", func(c *HubPublishConfig) { c.AccessKeyID = "" }, "hub.publish.access_key_id: is required"},
		{"no secret", func(c *HubPublishConfig) { c.SecretKeyFile = "" }, "hub.publish.secret_key_file: is required"},
		{"both secrets", func(c *HubPublishConfig) { c.SecretKeyEnv = "S3_SECRET" }, "not both"},
		{"bad env", func(c *HubPublishConfig) { c.SecretKeyFile, c.SecretKeyEnv = "", "S3 SECRET" }, "is not an environment variable name"},
		{"relative secret file", func(c *HubPublishConfig) { c.SecretKeyFile = "s3.secret" }, "is not an absolute path"},
		{"short retention", func(c *HubPublishConfig) { d := Duration(time.Minute); c.Retention = &d }, "hub.publish.retention: 1m0s is outside"},
		{"bad region", func(c *HubPublishConfig) { c.Region = "eu west" }, "is not a region name"},
	} {
		cfg := ok
		c.change(&cfg)
		l := &errorList{}
		cfg.validate(l)
		err := l.err()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	if ok.RetentionPeriod() != 365*24*time.Hour || ok.RegionName() != "us-east-1" || !ok.UseTLS() {
		t.Errorf("defaults: %v %s %v", ok.RetentionPeriod(), ok.RegionName(), ok.UseTLS())
	}
}

func TestHubPublishSecretKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := (HubPublishConfig{SecretKeyFile: p}).SecretKey(); err != nil || s != "s3cr3t" {
		t.Errorf("file: %q, %v", s, err)
	}
	t.Setenv("INTERLOCK_TEST_S3_SECRET", "fromenv")
	if s, err := (HubPublishConfig{SecretKeyEnv: "INTERLOCK_TEST_S3_SECRET"}).SecretKey(); err != nil || s != "fromenv" {
		t.Errorf("env: %q, %v", s, err)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (HubPublishConfig{SecretKeyFile: p}).SecretKey(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := (HubPublishConfig{SecretKeyEnv: "INTERLOCK_TEST_UNSET_VAR"}).SecretKey(); err == nil {
		t.Error("unset variable: no error")
	}
}

// The hub.publish rows are in docs/config.md before the hub section
// links HubPublishConfig into Config (TestDocsCoverEveryKey then checks
// them too).
func TestDocsCoverHubPublish(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeOf(HubPublishConfig{}), "hub.publish.") {
		if !strings.Contains(string(doc), "| `"+key+"` |") {
			t.Errorf("docs/config.md has no table row for %s", key)
		}
	}
}

// hub.publish decodes through the strict decoder as the hub section will
// use it: every key, durations and booleans, and unknown keys refused.
func TestHubPublishDecodes(t *testing.T) {
	src := "endpoint: 127.0.0.1:7070\nbucket: fleet\nregion: eu-west-1\naccess_key_id: AK\nsecret_key_env: S3_SECRET\nretention: 48h\ntls: false\n"
	root, yerr := parseYAML("hub.yaml", []byte(src))
	if yerr != nil {
		t.Fatal(yerr)
	}
	var c HubPublishConfig
	d := &decoder{errorList: errorList{file: "hub.yaml"}, lines: map[string]int{}, explained: map[string]bool{}}
	d.decode(root, reflect.ValueOf(&c).Elem(), "hub.publish", root.Line)
	if err := d.errorList.err(); err != nil {
		t.Fatal(err)
	}
	l := &errorList{lines: d.lines}
	c.validate(l)
	if err := l.err(); err != nil || c.RetentionPeriod() != 48*time.Hour || c.UseTLS() || c.RegionName() != "eu-west-1" || c.SecretKeyEnv != "S3_SECRET" {
		t.Fatalf("%+v, %v", c, err)
	}
	root, _ = parseYAML("hub.yaml", []byte("bucket: fleet\nretension: 48h\n"))
	d = &decoder{errorList: errorList{file: "hub.yaml"}, lines: map[string]int{}, explained: map[string]bool{}}
	d.decode(root, reflect.ValueOf(&HubPublishConfig{}).Elem(), "hub.publish", root.Line)
	if err := d.errorList.err(); err == nil || !strings.Contains(err.Error(), "retension") {
		t.Fatalf("unknown key: %v", err)
	}
}
