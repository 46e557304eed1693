package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/sshtest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// loginAccount is a user the test created, removed when it ends.
type loginAccount struct {
	name     string
	uid, gid uint32
	home     string
}

// addAccount creates a user (with a home when home is set) and removes it,
// home and all, when the test ends.
func addAccount(t *testing.T, name string, home bool) loginAccount {
	t.Helper()
	args := []string{"-s", "/bin/sh", "-U"}
	if home {
		args = append(args, "-m")
	} else {
		args = append(args, "-M", "-d", "/nonexistent")
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		// -f: the session's processes may still be dying after the
		// cgroup was killed.
		if out, err := exec.Command("userdel", "-f", "-r", name).CombinedOutput(); err != nil && home {
			t.Logf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return loginAccount{name: name, uid: parseID(t, u.Uid), gid: parseID(t, u.Gid), home: u.HomeDir}
}

// loginSSHD is a real sshd that logs people in through PAM, started in an
// intercepted cgroup so that what they run there is intercepted.
type loginSSHD struct {
	port       int
	knownHosts string
	log        string
}

// startLoginSSHD runs sshd with UsePAM yes in the cgroup dir, letting
// only who in, with key. Its PAM service is a stack of the test's own
// (sshd names the service after the name it is run by): pam_loginuid, as
// in Debian's /etc/pam.d/sshd, without pam_systemd, which on a host where
// logind runs would move the session into a scope of its own, out of the
// intercepted cgroup.
func startLoginSSHD(t *testing.T, cgDir string, who loginAccount, key sshtest.Key) *loginSSHD {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	service := "interlock-e2e-" + who.name
	pamFile := filepath.Join("/etc/pam.d", service)
	pam := `# interlock e2e (TestIdentityLogin): removed when the test ends
auth     required pam_deny.so
account  required pam_unix.so
session  required pam_loginuid.so
session  required pam_unix.so
password required pam_deny.so
`
	if err := os.WriteFile(pamFile, []byte(pam), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })
	bin := filepath.Join(dir, service)
	if err := os.Symlink(sshtest.SSHD, bin); err != nil {
		t.Fatal(err)
	}

	sshDir := filepath.Join(who.home, ".ssh")
	authorized := filepath.Join(sshDir, "authorized_keys")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authorized, []byte(key.Authorized()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sshDir, authorized} {
		if err := os.Chown(p, int(who.uid), int(who.gid)); err != nil {
			t.Fatal(err)
		}
	}

	hostKey, err := sshtest.NewKey(filepath.Join(dir, "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &loginSSHD{port: testkit.FreePort(t, sshtest.Host), knownHosts: filepath.Join(dir, "known_hosts"), log: filepath.Join(dir, "sshd.log")}
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile .ssh/authorized_keys
PidFile none
UsePAM yes
UseDNS no
PermitRootLogin no
AllowUsers %s
PasswordAuthentication no
KbdInteractiveAuthentication no
X11Forwarding no
LogLevel VERBOSE
`, s.port, sshtest.Host, hostKey.Path, who.name)), 0o600); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("[%s]:%d %s\n", sshtest.Host, s.port, hostKey.Authorized())
	if err := os.WriteFile(s.knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}

	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := inCgroup(t, cgDir, bin, "-D", "-e", "-f", cfg)
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("sshd log:\n%s", b)
		}
	})
	testkit.WaitFor(t, 30*time.Second, 50*time.Millisecond, func() bool {
		select {
		case <-done:
			b, _ := os.ReadFile(s.log)
			t.Fatalf("sshd exited: %s", b)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(sshtest.Host, strconv.Itoa(s.port)), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 8)
		n, _ := c.Read(b)
		return strings.HasPrefix(string(b[:n]), "SSH-2.0")
	})
	return s
}

// TestIdentityLogin: a person logs in to a real sshd through PAM (which
// sets the audit login uid), and in that session runs psql as another
// user through sudo. The session is recorded with who logged in, the
// audit session and the change of user through sudo, and a rule on the
// login user refuses the statement, while the same user's statement
// from a process that descends from no login goes through.
func TestIdentityLogin(t *testing.T) {
	srv := requirePG(t)
	requireTools(t, sshtest.SSHD, "ssh", "sudo", "useradd", "userdel")
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	person := addAccount(t, "ile2e-"+suffix, true)
	other := addAccount(t, "ile2e-to-"+suffix, false)

	// sudo to other without a password: the session has no terminal.
	sudoers := filepath.Join("/etc/sudoers.d", "interlock-e2e-"+suffix)
	if err := os.WriteFile(sudoers, []byte(fmt.Sprintf("%s ALL=(%s) NOPASSWD: ALL\n", person.name, other.name)), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })

	cgPath, cgDir := makeCgroup(t, "login-"+suffix)
	e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, fmt.Sprintf(`intercept:
  cgroups: [%s]
policy:
  rules:
    - {name: no-login-drop, match: {identity: {login_users: [%s]}, operation: {kinds: [drop_table]}}, action: deny}
`, cgPath, person.name))
	e.startDaemon()

	keyDir := t.TempDir()
	key, err := sshtest.NewKey(filepath.Join(keyDir, "person_key"))
	if err != nil {
		t.Fatal(err)
	}
	sshd := startLoginSSHD(t, cgDir, person, key)

	psql := func(sql string) []string {
		return []string{filepath.Join(srv.BinDir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", conninfo(srv, "sslmode=disable"), "-c", sql}
	}

	// The person's statement, through ssh and sudo.
	const loginSQL = "DROP TABLE IF EXISTS login_was_here"
	remote := shellQuote(append([]string{"sudo", "-n", "-u", other.name, "--"}, psql(loginSQL)...))
	argv := append(sshtest.ClientArgs(sshd.knownHosts, key.Path), "-p", strconv.Itoa(sshd.port), person.name+"@"+sshtest.Host, remote)
	stdout, stderr, code := runCmd(t, exec.Command("ssh", argv...))
	if !strings.Contains(stderr, "no-login-drop") {
		t.Errorf("the login's DROP was not refused by its rule (ssh exit %d): %s %s", code, stdout, stderr)
	}
	_, so, ok := e.findStatement(loginSQL)
	if !ok {
		t.Fatalf("no statement %q in the journal (ssh exit %d: %s %s)", loginSQL, code, stdout, stderr)
	}
	if so.Identity.Kernel.UID != other.uid {
		t.Errorf("the statement's process runs as uid %d, not %s's %d", so.Identity.Kernel.UID, other.name, other.uid)
	}
	h := so.Identity.Human
	if h == nil || h.NoLogin || h.Provenance != model.ProvProc || h.LoginUID == nil || *h.LoginUID != person.uid ||
		h.LoginUser != person.name || h.SessionID == nil || h.ChainIncomplete {
		t.Fatalf("human %+v, want the login of %s (%d) with a session", h, person.name, person.uid)
	}
	// The chain runs from the person to other, and sudo made a change.
	chain := h.Chain
	viaSudo := false
	for _, hop := range chain {
		viaSudo = viaSudo || filepath.Base(hop.Via) == "sudo"
	}
	if len(chain) == 0 || chain[0].FromUID != person.uid || chain[0].FromUser != person.name ||
		chain[len(chain)-1].ToUID != other.uid || chain[len(chain)-1].ToUser != other.name || !viaSudo {
		t.Errorf("chain %+v, want %s to %s through sudo", chain, person.name, other.name)
	}

	// The same user's statement from a process of no login: started by
	// the test in the same cgroup, with the login uid unset (the test may
	// itself run in someone's login; root may unset it unless the kernel
	// made it immutable).
	const noLoginSQL = "DROP TABLE IF EXISTS nologin_was_here"
	script := `printf 4294967295 >/proc/self/loginuid && u=$1 g=$2 && shift 2 && exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"`
	cmd := inCgroup(t, cgDir, append([]string{"/bin/sh", "-c", script, "sh", fmt.Sprint(other.uid), fmt.Sprint(other.gid)}, psql(noLoginSQL)...)...)
	stdout, stderr, code = runCmd(t, cmd)
	if code != 0 || strings.Contains(stderr, "no-login-drop") {
		t.Errorf("the DROP of no login did not go through (exit %d): %s %s", code, stdout, stderr)
	}
	_, so, ok = e.findStatement(noLoginSQL)
	if !ok {
		t.Fatalf("no statement %q in the journal: %s %s", noLoginSQL, stdout, stderr)
	}
	if h := so.Identity.Human; so.Identity.Kernel.UID != other.uid || h == nil || !h.NoLogin || h.LoginUID != nil {
		t.Errorf("no login expected for uid %d: uid %d, human %+v", other.uid, so.Identity.Kernel.UID, h)
	}
}
