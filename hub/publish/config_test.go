package publish

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	secret, ca := filepath.Join(dir, "secret"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(secret, []byte("sk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.HubPublishConfig{Endpoint: "s3.example.com:443", Bucket: "fleet", AccessKeyID: "AK", SecretKeyFile: secret}
	o, err := FromConfig(c)
	if err != nil || o.SecretKey != "sk" || !o.TLS || o.Retention != 365*24*time.Hour || o.Region != "us-east-1" || o.RootCAs != nil {
		t.Fatalf("%+v, %v", o, err)
	}
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.CAFile = ca
	if _, err := FromConfig(c); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("a CA file without a certificate: %v", err)
	}
	if CheckpointObject(42) != "fleet/checkpoints/00000000000000000042" {
		t.Errorf("object name %s", CheckpointObject(42))
	}
}
