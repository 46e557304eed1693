package kubernetes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
)

// TestServingCertFromClusterCA: the serving certificate is issued from
// the cluster CA named in the target, and a CA key file that others could
// read is refused (whoever holds it mints any identity of the cluster).
func TestServingCertFromClusterCA(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt, kf := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &config.KubernetesConfig{ServingCAFile: crt, ServingCAKeyFile: kf}
	cert, err := servingCert(dir, "c", k, []string{"10.0.0.10"})
	switch {
	case os.Geteuid() != 0:
		// The key file is the test's, not root's: refused as well.
		if err == nil || !strings.Contains(err.Error(), "owned by root") {
			t.Errorf("a CA key not owned by root: err %v, want a refusal", err)
		}
	case err != nil:
		t.Fatal(err)
	default:
		if err := cert.Leaf.CheckSignatureFrom(mustParse(t, der)); err != nil {
			t.Errorf("the serving certificate is not the cluster CA's: %v", err)
		}
	}
	if err := os.Chmod(kf, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := servingCert(dir, "c", k, []string{"10.0.0.10"}); err == nil || !strings.Contains(err.Error(), "mode 0600") {
		t.Errorf("a group-readable CA key: err %v, want a refusal naming the mode", err)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
