package tlsca

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// IssueFrom issues a server certificate for hosts (and localhost) from a
// CA the site gives interlock (a Kubernetes cluster CA), in memory: the
// leaf's key is never written, and the CA's key is not kept once it has
// signed. Clients that already trust that CA need no change. caCert and
// caKey are PEM; the key may be PKCS #1, PKCS #8 or SEC 1 (kubeadm's RSA
// key, k3s's and kind's EC ones).
func IssueFrom(caCertPEM, caKeyPEM []byte, commonName string, hosts []string) (tls.Certificate, error) {
	ca, err := parseCACert(caCertPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	signer, err := parseSigner(caKeyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return tls.Certificate{}, errors.New("the CA key does not match the CA certificate")
	}
	cert, err := issueLeaf(commonName, hosts, ca, signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue from %q: %w", ca.Subject.CommonName, err)
	}
	return cert, nil
}

// issueLeaf signs a new server certificate for hosts with ca's key; it
// never outlives ca. The chain holds the leaf and ca.
func issueLeaf(commonName string, hosts []string, ca *x509.Certificate, caKey crypto.Signer) (tls.Certificate, error) {
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl, err := leafTemplate(commonName, hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func parseCACert(b []byte) (*x509.Certificate, error) {
	p, _ := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" {
		return nil, errors.New("the CA certificate is not a PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%q is not a CA certificate (CA:TRUE with keyCertSign)", c.Subject.CommonName)
	}
	if time.Now().After(c.NotAfter) {
		return nil, fmt.Errorf("the CA certificate %q expired on %s", c.Subject.CommonName, c.NotAfter.Format(time.DateOnly))
	}
	return c, nil
}

func parseSigner(b []byte) (crypto.Signer, error) {
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, errors.New("the CA key is not PEM")
	}
	var k any
	var err error
	switch p.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(p.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(p.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(p.Bytes)
	default:
		return nil, fmt.Errorf("the CA key is a PEM %q, not a private key", p.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the CA key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the CA key (%T) cannot sign", k)
	}
	return s, nil
}

// leafTemplate is a server certificate for commonName, valid for hosts
// and for localhost and the loopback addresses.
func leafTemplate(commonName string, hosts []string) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkixName(commonName),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(leafLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range append(slices.Clone(hosts), "localhost", "127.0.0.1", "::1") {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl, nil
}
