package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCA(t *testing.T, key crypto.Signer, isCA bool, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestIssueFrom: a serving certificate issued from a site's CA (RSA in
// PKCS #1 as kubeadm writes it, EC in SEC 1 and PKCS #8) verifies
// against that CA alone for the target's names, as a server certificate,
// and never outlives the CA; a key of another CA, a certificate that is
// not a CA, an expired CA and a key that is not PEM are refused.
func TestIssueFrom(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(48 * time.Hour)
	rsaCA, ecCA := testCA(t, rsaKey, true, soon), testCA(t, ecKey, true, time.Now().Add(10*365*24*time.Hour))
	keys := map[string][]byte{
		"rsa pkcs1": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"ec sec1":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"ec pkcs8":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	hosts := []string{"10.0.0.10", "api.prod.internal"}
	for name, c := range map[string]struct{ ca, key []byte }{
		"rsa pkcs1": {rsaCA, keys["rsa pkcs1"]}, "ec sec1": {ecCA, keys["ec sec1"]}, "ec pkcs8": {ecCA, keys["ec pkcs8"]},
	} {
		cert, err := IssueFrom(c.ca, c.key, "interlock kubernetes proxy", hosts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(c.ca)
		for _, h := range append(hosts, "localhost") {
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s: the certificate does not verify for %s against the CA: %v", name, h, err)
			}
		}
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
			t.Errorf("%s: the certificate verifies for a name it was not issued for", name)
		}
		if cert.Leaf.IsCA || len(cert.Leaf.ExtKeyUsage) != 1 || cert.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
			t.Errorf("%s: the leaf is CA %v with key usages %v; want a server certificate only", name, cert.Leaf.IsCA, cert.Leaf.ExtKeyUsage)
		}
		if name == "rsa pkcs1" && cert.Leaf.NotAfter.After(soon) {
			t.Errorf("the leaf outlives its CA: %s > %s", cert.Leaf.NotAfter, soon)
		}
	}
	for name, c := range map[string]struct {
		ca, key []byte
		want    string
	}{
		"another CA's key":         {rsaCA, keys["ec sec1"], "does not match"},
		"not a CA":                 {testCA(t, ecKey, false, soon), keys["ec sec1"], "not a CA"},
		"expired CA":               {testCA(t, ecKey, true, time.Now().Add(-time.Minute)), keys["ec sec1"], "expired"},
		"key not PEM":              {ecCA, []byte("not a key"), "not PEM"},
		"a certificate as the key": {ecCA, ecCA, "not a private key"},
	} {
		if _, err := IssueFrom(c.ca, c.key, "x", hosts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one saying %q", name, err, c.want)
		}
	}
}
