package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/config"
)

// TargetCheck is one finding of CheckTarget.
type TargetCheck struct {
	Status string // ok, warn, fail
	Detail string
	Fix    string
}

// doctorTimeout bounds CheckTarget's connections and commands.
const doctorTimeout = 15 * time.Second

// accountScript reports, as key=value lines, what the held account (and so
// any session, which runs as it) can do to its own authorized_keys. POSIX
// sh: it runs under the account's login shell on any target.
const accountScript = `h=${HOME:-}; d="$h/.ssh"; f="$d/authorized_keys"
echo "home=$h"
echo "uid=$(id -u)"
if [ -e "$f" ]; then echo "ak_exists=1"; [ -s "$f" ] && echo "ak_nonempty=1"; [ -w "$f" ] && echo "ak_writable=1"; fi
if [ -e "$d" ]; then [ -w "$d" ] && echo "dir_writable=1"; else [ -n "$h" ] && [ -w "$h" ] && echo "dir_creatable=1"; fi
[ -e "$d/authorized_keys2" ] && echo "ak2_exists=1"
[ -e "$d/rc" ] && echo "rc_exists=1"
true`

// CheckTarget logs in to an ssh target the way the handler does, with the
// credential interlock holds (a certificate from the user CA in stateDir,
// or the key or password), and checks what the session could use to take
// the held account over: an authorized_keys file it may write and sshd
// honours (a key the session adds there logs in without interlock), a
// standing key_file credential, a ~/.ssh/rc.
func CheckTarget(ctx context.Context, tc config.TargetConfig, stateDir string) []TargetCheck {
	var userCA gossh.Signer
	cert := tc.Credentials != nil && tc.Credentials.Certificate
	if cert {
		s, err := readPrivateKey(filepath.Join(stateDir, "ssh", userCAKeyFile))
		if err != nil {
			fix := "start interlock once, or run `interlock ssh-ca user`, to create it"
			if !errors.Is(err, os.ErrNotExist) {
				fix = "run doctor as root; the user CA is " + filepath.Join(stateDir, "ssh", userCAKeyFile)
			}
			return []TargetCheck{{Status: "fail", Detail: "no SSH user CA: " + err.Error(), Fix: fix}}
		}
		userCA = s
	}
	t, err := prepareUpstream(tc, userCA)
	if err != nil {
		return []TargetCheck{{Status: "fail", Detail: err.Error(), Fix: "fix the target's credentials or host key settings in the config"}}
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()

	var out []TargetCheck
	var certSigners []gossh.Signer
	login := "key_file"
	switch {
	case cert:
		lc, err := signLoginCert(userCA, t.user, "interlock doctor target="+keyIDField(t.name), t.certExt, time.Now())
		if err != nil {
			return []TargetCheck{{Status: "fail", Detail: err.Error()}}
		}
		certSigners = append(certSigners, lc.signer)
		login = "a certificate from interlock's user CA"
	case t.signer == nil:
		login = "a password"
	}
	client, err := dialTarget(ctx, t, tc.Address, authMethods(t, certSigners...))
	if err != nil {
		fix := "check that sshd is up and reachable from this host and that the target's host key is in known_hosts/host_key"
		if strings.Contains(err.Error(), "unable to authenticate") {
			fix = "the target refuses interlock's credential for " + t.user + ": "
			if cert {
				fix += "install the user CA on the target (`interlock ssh-ca user` into the file sshd_config's TrustedUserCAKeys names, see docs/ssh.md)"
			} else {
				fix += "authorize the key_file's public key for the account, or better switch to certificate: true (docs/ssh.md)"
			}
		}
		return []TargetCheck{{Status: "fail", Detail: fmt.Sprintf("cannot log in as %s with %s: %v", t.user, login, err), Fix: fix}}
	}
	defer client.Close()
	out = append(out, TargetCheck{Status: "ok", Detail: fmt.Sprintf("logs in as %s with %s (%s)", t.user, login, client.ServerVersion())})
	if !cert {
		out = append(out, TargetCheck{Status: "warn",
			Detail: "the target keeps a standing credential for " + t.user + " (" + login + "): whoever reads it, or a session that changes the account's authorized keys, logs in without interlock",
			Fix:    "use credentials: {user: " + t.user + ", certificate: true}: interlock then signs a short-lived certificate for each login; on the target set TrustedUserCAKeys to `interlock ssh-ca user` and AuthorizedKeysFile none for " + t.user + " (docs/ssh.md)"})
	}

	facts, err := runAccountScript(client)
	if err != nil {
		return append(out, TargetCheck{Status: "warn", Detail: "could not inspect the account's ~/.ssh: " + err.Error(),
			Fix: "the account's shell must run a POSIX sh command; check the target by hand: who may write ~/.ssh/authorized_keys of " + t.user})
	}
	out = append(out, accountChecks(ctx, t, tc.Address, client, facts, cert)...)
	return out
}

// accountChecks turn the account's facts into findings. Whether sshd
// honours the account's authorized_keys cannot be read from its config as
// the account (sshd -T needs root), so it is asked: keys already in the
// file are offered as queries (no signature, so nothing logs in); with no
// key in the file, a throwaway key whose private half never leaves this
// process is written there for the probe and removed.
func accountChecks(ctx context.Context, t *target, address string, client *gossh.Client, facts map[string]string, cert bool) []TargetCheck {
	var out []TargetCheck
	file := facts["home"] + "/.ssh/authorized_keys"
	writable := facts["ak_writable"] == "1" || facts["dir_writable"] == "1" || facts["dir_creatable"] == "1"
	if facts["rc_exists"] == "1" {
		out = append(out, TargetCheck{Status: "warn", Detail: facts["home"] + "/.ssh/rc exists: sshd runs it at each login of " + t.user + " that permits user rc (a certificate from interlock never does)",
			Fix: "remove it unless you put it there, and look in the journal for the session that wrote it"})
	}
	honoured, how, err := probeAuthorizedKeys(ctx, t, address, client, facts)
	switch {
	case err != nil:
		if !writable {
			out = append(out, TargetCheck{Status: "ok", Detail: fmt.Sprintf("%s cannot write %s (probe of sshd: %v)", t.user, file, err)})
			break
		}
		out = append(out, TargetCheck{Status: "warn", Detail: fmt.Sprintf("%s can write %s, and whether sshd honours it is unknown: %v", t.user, file, err),
			Fix: "make sure the target's sshd_config has AuthorizedKeysFile none for " + t.user + " (Match User " + t.user + "), docs/ssh.md"})
	case honoured && writable:
		fix := "in the target's sshd_config: Match User " + t.user + " / AuthorizedKeysFile none (docs/ssh.md)"
		detail := fmt.Sprintf("a session can take %s over: it may write %s and sshd honours that file (%s), so a key it adds logs in without interlock", t.user, file, how)
		if !cert {
			detail += ", and removing interlock's key locks interlock out"
			fix = "use certificate: true and in the target's sshd_config: TrustedUserCAKeys <file with `interlock ssh-ca user`>, and Match User " + t.user + " / AuthorizedKeysFile none (docs/ssh.md)"
		}
		out = append(out, TargetCheck{Status: "warn", Detail: detail, Fix: fix})
	case honoured:
		status := "ok"
		fix := ""
		if cert {
			status, fix = "warn", "with certificate: true nothing needs authorized keys: set AuthorizedKeysFile none for "+t.user+" (docs/ssh.md)"
		}
		out = append(out, TargetCheck{Status: status, Detail: fmt.Sprintf("sshd honours %s (%s) but %s cannot write it", file, how, t.user), Fix: fix})
	default:
		out = append(out, TargetCheck{Status: "ok", Detail: fmt.Sprintf("sshd ignores %s for %s (%s): a key a session writes there does not log in", file, t.user, how)})
	}
	if facts["ak2_exists"] == "1" {
		out = append(out, TargetCheck{Status: "warn", Detail: facts["home"] + "/.ssh/authorized_keys2 exists: sshd configs that name it honour its keys",
			Fix: "remove it, and set AuthorizedKeysFile none for " + t.user})
	}
	return out
}

// probeAuthorizedKeys says whether sshd accepts keys from the account's
// authorized_keys, and how it found out.
func probeAuthorizedKeys(ctx context.Context, t *target, address string, client *gossh.Client, facts map[string]string) (bool, string, error) {
	if facts["ak_nonempty"] == "1" {
		keys, err := readAuthorizedKeys(client)
		if err != nil {
			return false, "", err
		}
		if len(keys) > 0 {
			ok, err := offerKeys(ctx, t, address, keys)
			return ok, fmt.Sprintf("offered %d of its keys as queries", len(keys)), err
		}
		// Only lines a plain query cannot test (cert-authority, from=):
		// the file is not empty, so no probe key is written either.
		return false, "", errors.New("its keys are cert-authority or from= lines, which a query cannot test")
	}
	if facts["ak_writable"] != "1" && facts["dir_writable"] != "1" && facts["dir_creatable"] != "1" {
		return false, "", errors.New("the file holds no key and the account cannot write one")
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, "", err
	}
	probe, err := gossh.NewPublicKey(pub)
	if err != nil {
		return false, "", err
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(probe))) + " interlock-doctor-probe"
	// Written only where the file is missing or empty, and put back as it
	// was: the account's own keys are never touched.
	add := `set -e; d="$HOME/.ssh"; f="$d/authorized_keys"; if [ -s "$f" ]; then echo busy; exit 0; fi
made=; [ -d "$d" ] || { mkdir -m 700 "$d"; made=dir; }; [ -e "$f" ] && had=1 || had=; [ -z "$made" ] && [ -z "$had" ] && made=file
umask 077; printf '%s\n' '` + line + `' > "$f"; echo "made=$made"`
	outp, err := runCommand(client, add)
	if err != nil {
		return false, "", fmt.Errorf("write a probe key: %w", err)
	}
	if strings.Contains(outp, "busy") {
		return false, "", errors.New("the file changed during the check")
	}
	made := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(outp), "made="))
	// Only the probe's line goes: a line another writer added meanwhile
	// stays, and so does the file then.
	undo := `d="$HOME/.ssh"; f="$d/authorized_keys"; made='` + made + `'
if [ -f "$f" ]; then rest=$(grep -vF '` + line + `' "$f" || true)
  if [ -n "$rest" ]; then printf '%s\n' "$rest" > "$f"; elif [ -n "$made" ]; then rm -f "$f"; else : > "$f"; fi; fi
if [ "$made" = dir ]; then rmdir "$d" 2>/dev/null; fi; true`
	defer runCommand(client, undo)
	ok, err := offerKeys(ctx, t, address, []gossh.PublicKey{probe})
	return ok, "probed with a throwaway key, written and removed", err
}

// offerKeys asks sshd, on a connection of its own, whether it would accept
// any of keys for the account: a publickey query carries no signature, so
// an accepted key is seen (sshd answers PK_OK) without logging in.
func offerKeys(ctx context.Context, t *target, address string, keys []gossh.PublicKey) (bool, error) {
	accepted := false
	var signers []gossh.Signer
	// sshd ends the connection after MaxAuthTries (6 by default) refusals.
	for _, k := range keys[:min(len(keys), 5)] {
		signers = append(signers, &querySigner{pub: k, accepted: &accepted})
	}
	c, err := dialTarget(ctx, t, address, []gossh.AuthMethod{gossh.PublicKeys(signers...)})
	if c != nil {
		c.Close()
		return false, errors.New("logged in with a query key")
	}
	if accepted {
		return true, nil
	}
	if err != nil && !strings.Contains(err.Error(), "unable to authenticate") {
		return false, err
	}
	return false, nil
}

// errQueryOnly stops the authentication once sshd accepted a key.
var errQueryOnly = errors.New("query only")

// querySigner offers a public key whose private half doctor does not
// have: sshd is asked about it, and if it says yes, signing records that
// and stops.
type querySigner struct {
	pub      gossh.PublicKey
	accepted *bool
}

func (s *querySigner) PublicKey() gossh.PublicKey { return s.pub }
func (s *querySigner) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	*s.accepted = true
	return nil, errQueryOnly
}
func (s *querySigner) SignWithAlgorithm(r io.Reader, data []byte, _ string) (*gossh.Signature, error) {
	return s.Sign(r, data)
}

// dialTarget logs in to the target with auth, verifying its host key.
func dialTarget(ctx context.Context, t *target, address string, auth []gossh.AuthMethod) (*gossh.Client, error) {
	d := net.Dialer{Timeout: doctorTimeout}
	nc, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	cfg := &gossh.ClientConfig{
		User: t.user,
		Auth: auth,
		HostKeyCallback: func(_ string, remote net.Addr, key gossh.PublicKey) error {
			return t.hostKeyCallback(t.address, remote, key)
		},
		HostKeyAlgorithms: t.hostKeyAlgos,
		ClientVersion:     serverVersion,
		Timeout:           doctorTimeout,
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, address, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return gossh.NewClient(sc, chans, reqs), nil
}

func runCommand(client *gossh.Client, script string) (string, error) {
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if err := s.Run(script); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func runAccountScript(client *gossh.Client) (map[string]string, error) {
	outp, err := runCommand(client, accountScript)
	if err != nil {
		return nil, err
	}
	facts := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(outp))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			facts[k] = v
		}
	}
	if facts["home"] == "" {
		return nil, errors.New("the account has no home directory ($HOME is empty)")
	}
	return facts, nil
}

// readAuthorizedKeys reads the public keys of the account's
// authorized_keys that a publickey query can test.
func readAuthorizedKeys(client *gossh.Client) ([]gossh.PublicKey, error) {
	outp, err := runCommand(client, `head -c 65536 "$HOME/.ssh/authorized_keys"`)
	if err != nil {
		return nil, fmt.Errorf("read authorized_keys: %w", err)
	}
	return testableKeys([]byte(outp)), nil
}

// testableKeys are the keys of an authorized_keys file that sshd's answer
// to a publickey query tells about.
func testableKeys(rest []byte) []gossh.PublicKey {
	var keys []gossh.PublicKey
	for len(rest) > 0 {
		k, _, options, r, err := gossh.ParseAuthorizedKey(rest)
		if err != nil {
			break
		}
		rest = r
		// A cert-authority line trusts certificates, not the key; from=
		// refuses doctor's address: sshd's no to either says nothing.
		untestable := false
		for _, o := range options {
			o = strings.ToLower(o)
			untestable = untestable || o == "cert-authority" || strings.HasPrefix(o, "from=")
		}
		if _, isCert := k.(*gossh.Certificate); !isCert && !untestable {
			keys = append(keys, k)
		}
	}
	return keys
}
