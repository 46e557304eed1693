package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/atomicfile"
)

// Files of interlock's SSH certificate authority, under <state_dir>/ssh/.
const (
	caKeyFile        = "ca_ed25519"         // the CA's private key (0600)
	caPubFile        = "ca_ed25519.pub"     // its public key, authorized_keys format
	caKnownHostsFile = "ca.known_hosts"     // the @cert-authority line clients install
	hostKeyFile      = "host_ed25519"       // the host key the certificates certify (0600)
	hostPubFile      = "host_ed25519.pub"   // its public key
	caComment        = "interlock-ssh-ca"   // comment of the CA key
	hostComment      = "interlock-ssh-host" // comment of the host key
)

// authority is interlock's SSH CA: it certifies one host key of interlock's
// for each target that has no host_key_file, so a client that trusts the
// CA (a @cert-authority line in its known_hosts) accepts interlock for
// every such target.
type authority struct {
	ca   gossh.Signer
	host gossh.Signer
}

// CAPublicKeyPath is where the CA's public key is written in stateDir.
func CAPublicKeyPath(stateDir string) string { return filepath.Join(stateDir, "ssh", caPubFile) }

// EnsureCA creates interlock's SSH CA in <stateDir>/ssh unless it exists,
// and returns the known_hosts line that trusts it for every host
// ("@cert-authority * ssh-ed25519 AAAA... interlock-ssh-ca"): what a
// package's install script appends to /etc/ssh/ssh_known_hosts. The same
// line is kept in <stateDir>/ssh/ca.known_hosts.
func EnsureCA(stateDir string) (string, error) {
	if _, err := loadAuthority(stateDir, nil); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "ssh", caKnownHostsFile))
	return string(b), err
}

// loadAuthority reads the CA and host keys from <stateDir>/ssh, creating
// them (mode 0600, in a 0700 directory) at first start.
func loadAuthority(stateDir string, log *slog.Logger) (*authority, error) {
	if stateDir == "" {
		return nil, errors.New("state_dir is not set: interlock keeps its SSH CA there")
	}
	dir := filepath.Join(stateDir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("SSH CA directory: %w", err)
	}
	ca, created, err := loadOrCreateKey(dir, caKeyFile, caPubFile, caComment)
	if err != nil {
		return nil, fmt.Errorf("SSH CA: %w", err)
	}
	if created && log != nil {
		log.Info("created interlock's SSH certificate authority; clients trust it with the line in "+filepath.Join(dir, caKnownHostsFile),
			"fingerprint", gossh.FingerprintSHA256(ca.PublicKey()))
	}
	host, _, err := loadOrCreateKey(dir, hostKeyFile, hostPubFile, hostComment)
	if err != nil {
		return nil, fmt.Errorf("SSH host key: %w", err)
	}
	line := "@cert-authority * " + string(gossh.MarshalAuthorizedKey(ca.PublicKey()))
	line = line[:len(line)-1] + " " + caComment + "\n"
	if err := atomicfile.WriteIfChanged(filepath.Join(dir, caKnownHostsFile), []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("SSH CA known_hosts line: %w", err)
	}
	return &authority{ca: ca, host: host}, nil
}

// loadOrCreateKey reads the ed25519 private key dir/name, or creates it.
// Creation goes through a temporary file and a hard link, so two processes
// starting at once end up with the same key.
func loadOrCreateKey(dir, name, pubName, comment string) (gossh.Signer, bool, error) {
	path := filepath.Join(dir, name)
	signer, err := readPrivateKey(path)
	if err == nil {
		return signer, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, false, err
	}
	// Another process starting at once may win the race: its key is used.
	created, err := atomicfile.Create(path, pem.EncodeToMemory(block), 0o600)
	if err != nil {
		return nil, false, err
	}
	signer, err = readPrivateKey(path)
	if err != nil {
		return nil, false, err
	}
	pub := gossh.MarshalAuthorizedKey(signer.PublicKey())
	pub = append(pub[:len(pub)-1], []byte(" "+comment+"\n")...)
	if err := atomicfile.WriteIfChanged(filepath.Join(dir, pubName), pub, 0o644); err != nil {
		return nil, false, err
	}
	return signer, created, nil
}

// hostSigners returns what interlock presents for a target without a
// host_key_file: a host certificate for the given principals, signed by
// the CA, and the plain host key for clients that pinned it instead.
func (a *authority) hostSigners(target string, principals []string) ([]gossh.Signer, error) {
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	cert := &gossh.Certificate{
		Key:             a.host.PublicKey(),
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        gossh.HostCert,
		KeyId:           "interlock target " + target,
		ValidPrincipals: principals,
		ValidAfter:      0,
		ValidBefore:     gossh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, a.ca); err != nil {
		return nil, fmt.Errorf("sign the host certificate: %w", err)
	}
	cs, err := gossh.NewCertSigner(cert, a.host)
	if err != nil {
		return nil, err
	}
	return []gossh.Signer{cs, a.host}, nil
}

// probeKey is a throwaway public key no known_hosts file can hold.
func probeKey() (gossh.PublicKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return gossh.NewPublicKey(pub)
}
