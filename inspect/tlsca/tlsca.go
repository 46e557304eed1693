// Package tlsca is interlock's local CA for the client legs it serves over
// TLS (postgres, kubernetes): it keeps the CA and the server certificates
// it issues in <state_dir>/tls/, where a client finds ca.crt to trust.
package tlsca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/atomicfile"
)

// The CA and the certificates live in <state_dir>/tls/: ca.crt is what a
// client trusts (a postgres client's sslrootcert, a kubeconfig's
// certificate-authority-data); the keys are mode 0600.
const (
	caFile     = "ca.crt"
	caKeyFile  = "ca.key"
	caLife     = 10 * 365 * 24 * time.Hour
	leafLife   = 397 * 24 * time.Hour
	leafMargin = 30 * 24 * time.Hour
)

// CAPath is where the CA certificate of stateDir is.
func CAPath(stateDir string) string { return filepath.Join(stateDir, "tls", caFile) }

// ServerCert loads or creates the CA and the server certificate name
// (name.crt and name.key), valid for every name and address in hosts and
// for localhost, and returns it with the CA in its chain.
func ServerCert(stateDir, name, commonName string, hosts []string) (tls.Certificate, error) {
	dir := filepath.Join(stateDir, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tls.Certificate{}, fmt.Errorf("create %s: %w", dir, err)
	}
	// Two interlock processes may share a state directory: the first to
	// take the lock creates what is missing.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return tls.Certificate{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return tls.Certificate{}, fmt.Errorf("lock %s: %w", dir, err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return tls.Certificate{}, err
	}
	return loadOrIssueLeaf(dir, name, commonName, ca, caKey, hosts)
}

func pkixName(commonName string) pkix.Name {
	return pkix.Name{CommonName: commonName, Organization: []string{"interlock"}}
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) }

func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	crtPath, keyPath := filepath.Join(dir, caFile), filepath.Join(dir, caKeyFile)
	if c, k, err := loadPair(crtPath, keyPath); err == nil {
		if time.Until(c.NotAfter) > leafLife {
			return c, k, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("interlock's CA in %s: %w (remove ca.crt and ca.key to make a new one)", dir, err)
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "interlock local CA " + host, Organization: []string{"interlock"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(crtPath, keyPath, der, key); err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func loadOrIssueLeaf(dir, name, commonName string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	crtPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if c, k, err := loadPair(crtPath, keyPath); err == nil && covers(c, hosts) &&
		time.Until(c.NotAfter) > leafMargin && c.CheckSignatureFrom(ca) == nil {
		return tls.Certificate{Certificate: [][]byte{c.Raw, ca.Raw}, PrivateKey: k, Leaf: c}, nil
	}
	cert, err := issueLeaf(commonName, hosts, ca, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(crtPath, keyPath, cert.Certificate[0], cert.PrivateKey.(*ecdsa.PrivateKey)); err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func loadPair(crtPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, errors.New("not PEM")
	}
	c, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParseECPrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !k.PublicKey.Equal(c.PublicKey) {
		return nil, nil, errors.New("the key does not match the certificate")
	}
	return c, k, nil
}

func writePair(crtPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
