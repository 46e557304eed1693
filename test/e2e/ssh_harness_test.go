package e2e

// The SSH end-to-end harness: a real OpenSSH sshd on 127.0.0.3 with its own
// host key and an authorized key that only interlock holds, and the real
// ssh, scp and sftp clients run under `interlock run`.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

const (
	sshdBin       = "/usr/sbin/sshd"
	sftpServerBin = "/usr/lib/openssh/sftp-server"
)

// requireTools skips the test when a tool is missing, or fails it under
// CI=true, where `make test` must have installed everything.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool, err)
	}
}

// sshKey is an ed25519 key pair written in OpenSSH's format.
type sshKey struct {
	path   string // private key, mode 0600
	pub    gossh.PublicKey
	signer gossh.Signer
}

func newSSHKey(t *testing.T, path string) sshKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sshKey{path: path, pub: s.PublicKey(), signer: s}
}

func (k sshKey) authorized() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.pub)))
}

func (k sshKey) fingerprint() string { return gossh.FingerprintSHA256(k.pub) }

// sshTarget is a running sshd: the "remote host".
type sshTarget struct {
	t    *testing.T
	dir  string
	port int
	// hostKey is the target's own host key; credKey the key interlock
	// logs in with (authorized on the target); clientKey the client's own
	// key, which the target does not know.
	hostKey, credKey, clientKey sshKey
	// knownHosts names the target's real host key, as an ordinary
	// known_hosts line for [127.0.0.3]:port.
	knownHosts string
	log        string
}

func (st *sshTarget) addr() string { return net.JoinHostPort("127.0.0.3", strconv.Itoa(st.port)) }

// sshdOpts change the target's sshd_config.
type sshdOpts struct {
	// authorizedKeysFile replaces the file of credKey (sshd keeps the
	// first value of a keyword, so it cannot be appended).
	authorizedKeysFile string
	// extra is appended to sshd_config (Match blocks go here).
	extra string
}

// startSSHD starts sshd -D on a free port of 127.0.0.3, logging in root
// with credKey only. It is stopped when the test ends.
func startSSHD(t *testing.T) *sshTarget {
	t.Helper()
	return startSSHDWith(t, sshdOpts{})
}

// startSSHDWith is startSSHD with o's changes to sshd_config.
func startSSHDWith(t *testing.T, o sshdOpts) *sshTarget {
	t.Helper()
	requireTools(t, sshdBin, "ssh", "scp", "sftp")
	if _, err := os.Stat(sftpServerBin); err != nil {
		requireTools(t, sftpServerBin)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	st := &sshTarget{t: t, dir: dir, log: filepath.Join(dir, "sshd.log")}
	st.hostKey = newSSHKey(t, filepath.Join(dir, "ssh_host_ed25519_key"))
	st.credKey = newSSHKey(t, filepath.Join(dir, "interlock_cred"))
	st.clientKey = newSSHKey(t, filepath.Join(dir, "client_key"))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(st.credKey.authorized()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	st.port = freePort(t, "127.0.0.3")
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.3
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
UseDNS no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
Subsystem sftp %s
LogLevel VERBOSE
MaxStartups 200:30:300
MaxSessions 50
`, st.port, st.hostKey.path, filepath.Join(dir, "authorized_keys"), sftpServerBin)
	if o.authorizedKeysFile != "" {
		cfg = strings.Replace(cfg, "AuthorizedKeysFile "+filepath.Join(dir, "authorized_keys"), "AuthorizedKeysFile "+o.authorizedKeysFile, 1)
	}
	cfg += o.extra
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st.knownHosts = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.3]:%d %s\n", st.port, st.hostKey.authorized())
	if err := os.WriteFile(st.knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	runSSHD(t, st, "sshd", "-f", cfgPath)
	return st
}

// runSSHD runs sshd with args (in the foreground, logging to st.log) until
// the test ends, and returns once it answers on st.addr() with its
// version.
func runSSHD(t *testing.T, st *sshTarget, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(sshdBin, append([]string{"-D", "-e"}, args...)...)
	logf, err := os.Create(st.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(st.log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	// Ready when it answers with its version.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", st.addr(), time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			banner, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(banner, "SSH-2.0-") {
				return
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(st.log)
			t.Fatalf("%s exited: %s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(st.log)
			t.Fatalf("%s not ready on %s: %v\n%s", name, st.addr(), err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// started counts the sessions sshd started whose kind starts with what
// ("command", "shell", "subsystem"), from its log.
func (st *sshTarget) started(what string) int {
	b, _ := os.ReadFile(st.log)
	return strings.Count(string(b), "Starting session: "+what)
}

// sshTargetOpts is what a test changes in the interlock target.
type sshTargetOpts struct {
	// knownHosts overrides the file interlock verifies the target with.
	knownHosts string
	// useCA presents a certificate from interlock's CA instead of the
	// target's own host key.
	useCA bool
	// extra is added under the target, indented by 4 spaces.
	extra string
	// global is added at the top level of the config (a policy section).
	global string
	// credentials replaces the key_file credential for root: the YAML
	// under credentials:, indented by 6 spaces.
	credentials string
}

// newSSHEnv is an interlock config with the target "box" at st.
func newSSHEnv(t *testing.T, st *sshTarget, o sshTargetOpts) *env {
	t.Helper()
	kh := o.knownHosts
	if kh == "" {
		kh = st.knownHosts
	}
	creds := o.credentials
	if creds == "" {
		creds = "user: root\n      key_file: " + st.credKey.path
	}
	extra := fmt.Sprintf("credentials:\n      %s\n    known_hosts: %s", creds, kh)
	if !o.useCA {
		extra += "\n    host_key_file: " + st.hostKey.path
	}
	if o.extra != "" {
		extra += "\n    " + o.extra
	}
	return newEnv(t, []target{{name: "box", address: st.addr(), protocol: "ssh", extra: extra}}, o.global)
}

// clientOpts are the options every client runs with: no user config, the
// strict host key check against an ordinary known_hosts, the client's own
// key (which the target does not know), and no prompts.
func (st *sshTarget) clientOpts(knownHosts string) []string {
	if knownHosts == "" {
		knownHosts = st.knownHosts
	}
	return []string{"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-i", st.clientKey.path,
		"-o", "ConnectTimeout=20"}
}

// sshArgv is an ssh command line to the target.
func (st *sshTarget) sshArgv(args ...string) []string {
	argv := append([]string{"ssh"}, st.clientOpts("")...)
	argv = append(argv, "-p", strconv.Itoa(st.port), "root@127.0.0.3")
	return append(argv, args...)
}

// shellQuote quotes argv for sh -c.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// sshOpens returns the session.open records of ssh sessions, in order.
func sshOpens(e *env) []model.SessionOpen {
	var out []model.SessionOpen
	for _, so := range entriesOf[model.SessionOpen](e, model.KindSessionOpen) {
		if so.Target.Protocol == model.ProtoSSH {
			out = append(out, so)
		}
	}
	return out
}

// payload returns the payload of the entry seq.
func payload(e *env, seq uint64) []byte {
	e.t.Helper()
	var p []byte
	err := journal.Entries(context.Background(), e.journal, seq, func(en journal.Entry) error {
		p = en.Payload
		return errStopEntries
	})
	if err != nil && err != errStopEntries {
		e.t.Fatalf("read payload %d: %v", seq, err)
	}
	return p
}

var errStopEntries = errors.New("stop")
