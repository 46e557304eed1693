package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/internal/atomicfile"
	"github.com/interlock/interlock/journal/evidence"
)

// Files in the hub's state directory. The keys are made at first start
// and never replaced: hosts and auditors hold the hub to them.
const (
	IDFile       = "hub.id"
	CAKeyFile    = "ca.key"
	CACertFile   = "ca.crt"
	CosignerFile = "cosigner.key"
	FleetKeyFile = "fleet.key"
)

// Certificate lifetimes. A host certificate outlives any sensible
// deployment of a runner; the hub's own server certificate is issued
// afresh at every start.
const (
	caLifetime     = 20 * 365 * 24 * time.Hour
	hostLifetime   = 5 * 365 * 24 * time.Hour
	serverLifetime = 90 * 24 * time.Hour
)

// OperatorOU marks a client certificate the hub issued to an operator
// (who may search sessions) rather than to a host; hosts cannot get one,
// since the hub writes a host certificate's subject itself.
const OperatorOU = "interlock-hub-operator"

// Keys are the hub's identity: its id (the fleet log's origin), the CA
// that issues host and server certificates, the cosigner key that
// witnesses host checkpoints and the key that signs fleet checkpoints.
type Keys struct {
	HubID string
	CA    *x509.Certificate
	CAPEM []byte
	caKey crypto.Signer

	Cosigner note.Signer
	// CosignerKey is the cosigner's verifier key in cosignature v1 form
	// (what hosts and auditors verify cosignatures with).
	CosignerKey string
	Fleet       note.Signer
	FleetKey    string
	// Decisions signs approval decisions with the cosigner key under the
	// decision signature type (hub/decision): hosts verify them with the
	// hub key they got at enrolment, and no decision passes for a
	// cosignature or a checkpoint.
	Decisions note.Signer
}

// LoadOrCreateKeys reads the hub's keys from stateDir, creating what is
// missing (the directory 0700, keys 0600). Several hubs starting on one
// state directory agree on one set: each file appears atomically and the
// losers read the winner's.
func LoadOrCreateKeys(stateDir string) (*Keys, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: state directory: %w", err)
	}
	k := &Keys{}
	idb, err := loadOrCreate(filepath.Join(stateDir, IDFile), 0o644, func() ([]byte, error) {
		b := make([]byte, 16)
		rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n"), nil
	})
	if err != nil {
		return nil, err
	}
	k.HubID = strings.TrimSpace(string(idb))
	if len(k.HubID) != 32 || strings.Trim(k.HubID, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("hub: %s holds %q, not 32 hex digits", filepath.Join(stateDir, IDFile), k.HubID)
	}
	short := k.HubID[:8]
	if k.Cosigner, k.CosignerKey, err = loadNoteKey(filepath.Join(stateDir, CosignerFile), "interlock-hub-"+short, true); err != nil {
		return nil, err
	}
	skey, err := os.ReadFile(filepath.Join(stateDir, CosignerFile))
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if k.Decisions, err = decision.NewSigner(string(skey)); err != nil {
		return nil, fmt.Errorf("hub: key %s: %w", CosignerFile, err)
	}
	if k.Fleet, k.FleetKey, err = loadNoteKey(filepath.Join(stateDir, FleetKeyFile), "interlock-fleet-"+short, false); err != nil {
		return nil, err
	}
	if err := k.loadCA(stateDir); err != nil {
		return nil, err
	}
	return k, nil
}

func loadOrCreate(path string, mode os.FileMode, make func() ([]byte, error)) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hub: %w", err)
	}
	b, err := make()
	if err != nil {
		return nil, err
	}
	if _, err := atomicfile.Create(path, b, mode); err != nil {
		return nil, fmt.Errorf("hub: create %s: %w", path, err)
	}
	b, err = os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	return b, nil
}

// loadNoteKey reads (or makes) a note signing key and returns its signer
// and verifier key; cosign makes it a cosignature v1 signer.
func loadNoteKey(path, name string, cosign bool) (note.Signer, string, error) {
	b, err := loadOrCreate(path, 0o600, func() ([]byte, error) {
		skey, _, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, fmt.Errorf("hub: generate %s: %w", name, err)
		}
		return []byte(skey + "\n"), nil
	})
	if err != nil {
		return nil, "", err
	}
	skey := strings.TrimSpace(string(b))
	plain, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("hub: key %s does not parse: %w", path, err)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("hub: key %s: %w", path, err)
	}
	if !cosign {
		return plain, vkey, nil
	}
	cs, err := evidence.NewCosigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("hub: key %s: %w", path, err)
	}
	ckey, err := evidence.CosignatureKey(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("hub: key %s: %w", path, err)
	}
	return cs, ckey, nil
}

// verifierKey derives the verifier key of an ed25519 note signer key
// (PRIVATE+KEY+name+hash+base64(0x01||seed)).
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("not a note signer key")
	}
	name := parts[2]
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(name, pub)
}

func (k *Keys) loadCA(stateDir string) error {
	keyPEM, err := loadOrCreate(filepath.Join(stateDir, CAKeyFile), 0o600, func() ([]byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("hub: generate CA key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("hub: CA key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return fmt.Errorf("hub: %s is not PEM", CAKeyFile)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return fmt.Errorf("hub: %s: %w", CAKeyFile, err)
	}
	k.caKey = key
	certPEM, err := loadOrCreate(filepath.Join(stateDir, CACertFile), 0o644, func() ([]byte, error) {
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "interlock hub CA " + k.HubID[:8]},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(caLifetime),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, fmt.Errorf("hub: create CA certificate: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
	})
	if err != nil {
		return err
	}
	blk, _ = pem.Decode(certPEM)
	if blk == nil {
		return fmt.Errorf("hub: %s is not PEM", CACertFile)
	}
	if k.CA, err = x509.ParseCertificate(blk.Bytes); err != nil {
		return fmt.Errorf("hub: %s: %w", CACertFile, err)
	}
	if !publicKeyEqual(k.CA.PublicKey, key.Public()) {
		return fmt.Errorf("hub: %s is not the certificate of %s", CACertFile, CAKeyFile)
	}
	k.CAPEM = certPEM
	return nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	x, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && x.Equal(b)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// CAFingerprint is the SHA-256 of the CA certificate (hex), which a host
// pins at enrolment when it is not handed the CA file.
func (k *Keys) CAFingerprint() string { return Fingerprint(k.CA.Raw) }

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// ServerCert issues the hub's server certificate for names (DNS names
// and IP addresses) with a fresh key.
func (k *Keys) ServerCert(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("hub: server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "interlock hub " + k.HubID[:8]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(serverLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.CA, key.Public(), k.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("hub: issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, k.CA.Raw}, PrivateKey: key}, nil
}

// SignCSR issues a host's client certificate for the key of a PEM
// certificate request. The subject is the hub's (CN = host id), never the
// request's: the hub knows a host by what it wrote there.
func (k *Keys) SignCSR(csrPEM []byte, hostID string) (certPEM []byte, fingerprint string, err error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, "", errors.New("the CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("the CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("the CSR's signature does not verify: %w", err)
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("the CSR's RSA key has %d bits; want at least 2048", pub.N.BitLen())
		}
	default:
		return nil, "", fmt.Errorf("the CSR's key type %T is not supported (use ECDSA or Ed25519)", pub)
	}
	return k.issueClient(csr.PublicKey, pkix.Name{CommonName: hostID}, hostLifetime)
}

// IssueOperator issues an operator's client certificate for pub.
func (k *Keys) IssueOperator(pub crypto.PublicKey, name string, lifetime time.Duration) (certPEM []byte, fingerprint string, err error) {
	return k.issueClient(pub, pkix.Name{CommonName: name, OrganizationalUnit: []string{OperatorOU}}, lifetime)
}

func (k *Keys) issueClient(pub crypto.PublicKey, subject pkix.Name, lifetime time.Duration) ([]byte, string, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(lifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.CA, pub, k.caKey)
	if err != nil {
		return nil, "", fmt.Errorf("hub: issue client certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Fingerprint(der), nil
}
