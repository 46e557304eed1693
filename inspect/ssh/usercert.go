package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// Files of interlock's SSH user CA, under <state_dir>/ssh/. It is a key of
// its own, apart from the host CA: a target trusts it (TrustedUserCAKeys)
// to log interlock in, and clients trust the host CA to accept interlock;
// neither trust implies the other.
const (
	userCAKeyFile = "user_ca_ed25519"     // the user CA's private key (0600)
	userCAPubFile = "user_ca_ed25519.pub" // its public key, for TrustedUserCAKeys
	userCAComment = "interlock-ssh-user-ca"
)

// Lifetime of a login certificate. sshd checks a certificate's validity
// when it authenticates, not afterwards, so the certificate only has to
// outlive the handshake: a short window leaves nothing worth stealing.
// The start is back-dated for a target whose clock runs behind.
const (
	certBackdate = time.Minute
	certLifetime = 2 * time.Minute
)

// UserCAPublicKeyPath is where the user CA's public key is kept in
// stateDir: the file a target's sshd_config names in TrustedUserCAKeys.
func UserCAPublicKeyPath(stateDir string) string {
	return filepath.Join(stateDir, "ssh", userCAPubFile)
}

// EnsureUserCA creates interlock's SSH user CA in <stateDir>/ssh unless it
// exists, and returns its public key in authorized_keys format ("ssh-ed25519
// AAAA... interlock-ssh-user-ca"), the line TrustedUserCAKeys reads.
func EnsureUserCA(stateDir string) (string, error) {
	ca, err := loadUserCA(stateDir, nil)
	if err != nil {
		return "", err
	}
	return userCALine(ca.PublicKey()), nil
}

func userCALine(pub gossh.PublicKey) string {
	line := gossh.MarshalAuthorizedKey(pub)
	return string(line[:len(line)-1]) + " " + userCAComment + "\n"
}

// loadUserCA reads the user CA from <stateDir>/ssh, creating it (mode
// 0600, in a 0700 directory) at first start.
func loadUserCA(stateDir string, log *slog.Logger) (gossh.Signer, error) {
	if stateDir == "" {
		return nil, errors.New("state_dir is not set: interlock keeps its SSH user CA there")
	}
	dir := filepath.Join(stateDir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("SSH user CA directory: %w", err)
	}
	ca, created, err := loadOrCreateKey(dir, userCAKeyFile, userCAPubFile, userCAComment)
	if err != nil {
		return nil, fmt.Errorf("SSH user CA: %w", err)
	}
	if created && log != nil {
		log.Info("created interlock's SSH user CA; targets with credentials.certificate trust it with TrustedUserCAKeys "+filepath.Join(dir, userCAPubFile)+" (see `interlock ssh-ca user`)",
			"fingerprint", gossh.FingerprintSHA256(ca.PublicKey()))
	}
	return ca, nil
}

// CertExtensions are the permissions a login certificate grants on a
// target: a terminal always, forwarding only where the target's allow
// section opens it, so sshd itself refuses what interlock's policy
// refuses. permit-user-rc is never granted: a session must not plant a
// ~/.ssh/rc that runs at every later login.
func CertExtensions(allow *config.SSHAllow) map[string]string {
	ext := map[string]string{"permit-pty": ""}
	if allow != nil && allow.PortForwarding {
		ext["permit-port-forwarding"] = ""
	}
	if allow != nil && allow.AgentForwarding {
		ext["permit-agent-forwarding"] = ""
	}
	if allow != nil && allow.X11 {
		ext["permit-X11-forwarding"] = ""
	}
	return ext
}

// loginCert is one login's certificate and the key it certifies.
type loginCert struct {
	signer gossh.Signer // the certificate with its ephemeral key
	cert   *gossh.Certificate
}

// signLoginCert makes a fresh ed25519 key, held only in memory, and a user
// certificate for it from ca: valid for user only, from a little before
// now for certLifetime, with the given extensions and no critical options.
func signLoginCert(ca gossh.Signer, user, keyID string, ext map[string]string, now time.Time) (*loginCert, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("login key: %w", err)
	}
	key, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("login key: %w", err)
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	exts := make(map[string]string, len(ext))
	for k, v := range ext {
		exts[k] = v
	}
	cert := &gossh.Certificate{
		Key:             key.PublicKey(),
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        gossh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{user},
		ValidAfter:      uint64(now.Add(-certBackdate).Unix()),
		ValidBefore:     uint64(now.Add(certLifetime).Unix()),
		Permissions:     gossh.Permissions{Extensions: exts},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return nil, fmt.Errorf("sign the login certificate: %w", err)
	}
	signer, err := gossh.NewCertSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("login certificate: %w", err)
	}
	return &loginCert{signer: signer, cert: cert}, nil
}

// record is what the journal says about the certificate.
func (lc *loginCert) record() *model.SSHLoginCert {
	c := lc.cert
	r := &model.SSHLoginCert{
		Serial:        strconv.FormatUint(c.Serial, 10),
		KeyID:         c.KeyId,
		Principals:    c.ValidPrincipals,
		ValidAfterNS:  int64(c.ValidAfter) * int64(time.Second),
		ValidBeforeNS: int64(c.ValidBefore) * int64(time.Second),
		Fingerprint:   gossh.FingerprintSHA256(c.Key),
	}
	for k := range c.Extensions {
		r.Extensions = append(r.Extensions, k)
	}
	slices.Sort(r.Extensions)
	return r
}

// sessionKeyID is a login certificate's key id: the interlock session, the
// target and who connected, so the target's sshd log ("Accepted
// certificate ID ...") ties the login to its journal entries.
func sessionKeyID(session, target string, id model.Identity) string {
	exe := "unknown"
	if id.Proc != nil && id.Proc.Exe != "" {
		exe = id.Proc.Exe
	}
	return fmt.Sprintf("interlock session=%s target=%s uid=%d exe=%s",
		keyIDField(session), keyIDField(target), id.Kernel.UID, keyIDField(exe))
}

// keyIDField keeps a value of the key id to printable ASCII without
// spaces or quotes, and short: the executable's path is the session's to
// choose, and must not forge words in the target's log.
func keyIDField(s string) string {
	const max = 200
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			b.WriteString("...")
			break
		}
		if r <= ' ' || r > '~' || r == '"' || r == '\'' || r == '\\' {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
