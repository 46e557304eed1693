package e2e

// The SSH end-to-end harness: a real OpenSSH sshd on 127.0.0.3 with its own
// host key and an authorized key that only interlock holds, and the real
// ssh, scp and sftp clients run under `interlock run`.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit/sshtest"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
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

// newSSHKey is an ed25519 key pair, its private half written at path.
func newSSHKey(t *testing.T, path string) sshtest.Key {
	t.Helper()
	k, err := sshtest.NewKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sshTarget is a running sshd: the "remote host".
type sshTarget struct {
	t    *testing.T
	dir  string
	port int
	// hostKey is the target's own host key; credKey the key interlock
	// logs in with (authorized on the target); clientKey the client's own
	// key, which the target does not know.
	hostKey, credKey, clientKey sshtest.Key
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
	requireTools(t, sshtest.SSHD, "ssh", "scp", "sftp")
	if _, err := os.Stat(sshtest.SFTPServer); err != nil {
		requireTools(t, sshtest.SFTPServer)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	srv, err := sshtest.Start(context.Background(), dir, sshtest.Options{AuthorizedKeysFile: o.authorizedKeysFile, Extra: o.extra})
	if err != nil {
		t.Fatal(err)
	}
	st := &sshTarget{t: t, dir: dir, port: srv.Port, hostKey: srv.HostKey, credKey: srv.CredKey, clientKey: srv.ClientKey,
		knownHosts: srv.KnownHosts, log: srv.Log}
	stopSSHDAtEnd(t, "sshd", st.log, srv.Stop)
	return st
}

// runSSHD runs sshd with args (in the foreground, logging to st.log) until
// the test ends, and returns once it answers on st.addr() with its
// version.
func runSSHD(t *testing.T, st *sshTarget, name string, args ...string) {
	t.Helper()
	p, err := sshtest.Run(context.Background(), st.log, st.addr(), args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	stopSSHDAtEnd(t, name, st.log, p.Stop)
}

// stopSSHDAtEnd stops an sshd when the test ends and, if the test failed,
// shows its log.
func stopSSHDAtEnd(t *testing.T, name, log string, stop func()) {
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
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
		creds = "user: root\n      key_file: " + st.credKey.Path
	}
	extra := fmt.Sprintf("credentials:\n      %s\n    known_hosts: %s", creds, kh)
	if !o.useCA {
		extra += "\n    host_key_file: " + st.hostKey.Path
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
	return sshtest.ClientArgs(cmp.Or(knownHosts, st.knownHosts), st.clientKey.Path)
}

// clientHome is a home for a client running as uid, and in it a copy of
// the client's key that uid alone can read (ssh refuses a key others can
// read, and uid cannot read root's).
func (st *sshTarget) clientHome(t *testing.T, uid int) (home, key string) {
	t.Helper()
	home = sharedDir(t)
	key = filepath.Join(home, "id_client")
	if err := os.WriteFile(key, st.clientKey.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(key, uid, uid); err != nil {
		t.Fatal(err)
	}
	return home, key
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
