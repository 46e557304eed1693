package e2e

// Class 9, "pre-authentication amplification" (issue 13): interlock used
// to dial the target and run the key exchange for every accepted
// connection before the client sent a byte. Uid A's idle connects then
// filled sshd's MaxStartups and uid B's `ssh box true` failed. Now nothing
// reaches the target before the client has authenticated with interlock,
// and limits.per_uid.ssh_preauth caps A's connections still
// authenticating.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// startStrictSSHD starts a second sshd with st's keys and config on a new
// port of 127.0.0.3, with MaxStartups 10:30:20 (after 10 unauthenticated
// connections sshd starts dropping new ones, all of them after 20). It
// returns a copy of st that points at it, with a known_hosts for its
// port.
func startStrictSSHD(t *testing.T, st *sshTarget) *sshTarget {
	t.Helper()
	s2 := *st
	s2.port = testkit.FreePort(t, "127.0.0.3")
	s2.log = filepath.Join(st.dir, "sshd-strict.log")
	s2.knownHosts = filepath.Join(st.dir, "known_hosts-strict")
	line := fmt.Sprintf("[127.0.0.3]:%d %s\n", s2.port, st.hostKey.Authorized())
	if err := os.WriteFile(s2.knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	// -p replaces the config file's Port; -o takes precedence over the
	// file (sshd keeps the first value it reads of each option).
	runSSHD(t, &s2, "strict sshd", "-f", filepath.Join(st.dir, "sshd_config"), "-p", strconv.Itoa(s2.port),
		"-o", "MaxStartups=10:30:20", "-o", "PerSourceMaxStartups=none")
	return &s2
}

// connectionsSeen counts the connections sshd accepted, from its log
// (LogLevel VERBOSE logs "Connection from ADDR port N on ..." for each).
func (st *sshTarget) connectionsSeen() int {
	b, _ := os.ReadFile(st.log)
	return strings.Count(string(b), "Connection from ")
}

// TestSSHPreauthNoAmplification: uid A opens 120 TCP connections through
// interlock to a target whose sshd drops unauthenticated connections past
// 10, and sends nothing on them, while uid B runs `ssh box true` again and
// again. B always succeeds; sshd sees no connection for A's; A's
// connections beyond limits.per_uid.ssh_preauth are refused at once with
// a line saying why, and each refusal is journaled.
func TestSSHPreauthNoAmplification(t *testing.T) {
	base := startSSHD(t)
	st := startStrictSSHD(t, base)
	suffix := strconv.Itoa(os.Getpid())
	cgA, dirA := makeCgroup(t, "ssh-preauth-a-"+suffix)
	cgB, dirB := makeCgroup(t, "ssh-preauth-b-"+suffix)
	const preauth, idle = 10, 120
	// Only the new limit may stop A: the session caps and open rates are
	// off, and A's silent connections outlive the test's flood (the
	// handshake timeout, 20 s, ends them first).
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf("intercept:\n  cgroups: [%s, %s]\n"+
		"limits:\n  per_uid: {sessions: 0, opens_per_second: 0, ssh_preauth: %d}\n  per_cgroup: {sessions: 0, opens_per_second: 0}\n"+
		"  timeouts:\n    ssh: {first_byte: 60s}\n", cgA, cgB, preauth)})
	e.startDaemon()
	before := st.connectionsSeen()

	// B's key and home: its own copy, readable by B only.
	home, keyB := st.clientHome(t, uidB)

	// A: open the connections one after another, read the first line
	// interlock sends on each, print it, then hold them all silently.
	out := sharedDir(t)
	script := fmt.Sprintf(`fds=()
for i in $(seq %d); do
  exec {fd}<>/dev/tcp/127.0.0.3/%d || { echo "connect $i failed"; continue; }
  fds+=($fd)
done
for fd in "${fds[@]}"; do
  line=
  read -r -t 5 -u $fd line
  echo "first: ${line%%$'\r'}"
done
echo READY
sleep 30
`, idle, st.port)
	flooder := inCgroup(t, dirA, asUID(uidA, "bash", "-c", script)...)
	aOut, err := os.Create(filepath.Join(out, "a.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer aOut.Close()
	flooder.Stdout, flooder.Stderr = aOut, aOut
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan struct{})
	go func() { flooder.Wait(); close(aDone) }()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dirA, "cgroup.kill"), []byte("1"), 0)
		<-aDone
	})
	readA := func() string { b, _ := os.ReadFile(aOut.Name()); return string(b) }
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(readA(), "READY") {
		if time.Now().After(deadline) {
			t.Fatalf("A's connections are not all open after 15 s: %s", readA())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// B, while A's connections are held: every ssh succeeds.
	const bRuns = 8
	ok := 0
	for i := range bRuns {
		argv := append([]string{"ssh"}, st.clientOpts("")...)
		argv = append(argv, "-i", keyB, "-p", strconv.Itoa(st.port), "root@127.0.0.3", "true")
		cmd := inCgroup(t, dirB, asUID(uidB, argv...)...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		var o, eb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &eb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Errorf("B's `ssh box true` %d failed while A held %d connections: %v: %s", i, idle, err, eb.String())
			continue
		}
		ok++
		t.Logf("B's ssh %d took %s", i, time.Since(start).Round(time.Millisecond))
	}
	seen := st.connectionsSeen() - before
	aText := readA()
	select {
	case <-aDone:
		t.Fatalf("A's flooder ended before B was done: %s", aText)
	default:
	}

	// The target saw B's connections and nothing of A's.
	if seen != ok {
		t.Errorf("sshd accepted %d connections while B made %d successful ones: A's idle connections reached the target", seen, ok)
	}
	// A: the first preauth connections got interlock's version line, the
	// rest a refusal.
	var versions, refused, other int
	for _, l := range strings.Split(aText, "\n") {
		switch {
		case !strings.HasPrefix(l, "first: "):
		case strings.HasPrefix(l, "first: SSH-2.0-interlock"):
			versions++
		case strings.Contains(l, fmt.Sprintf("interlock: refused: uid %d has %d SSH connections still authenticating (limits.per_uid.ssh_preauth)", uidA, preauth)):
			refused++
		default:
			other++
		}
	}
	if versions != preauth || refused != idle-preauth || other != 0 {
		t.Errorf("A's %d connections: %d got a version line (want %d), %d a refusal (want %d), %d something else:\n%s",
			idle, versions, preauth, refused, idle-preauth, other, aText)
	}

	// Each refusal is journaled as a refused session of uid A.
	var journaled int
	for _, so := range sshOpens(e) {
		if so.Decision.Rule != "limits.per_uid.ssh_preauth" {
			continue
		}
		if so.Identity.Kernel.UID != uidA || so.Decision.Action != model.Deny {
			t.Errorf("a pre-auth refusal of uid %d, action %s: want uid %d, deny", so.Identity.Kernel.UID, so.Decision.Action, uidA)
		}
		journaled++
	}
	if journaled != idle-preauth {
		t.Errorf("%d pre-auth refusals journaled, want %d", journaled, idle-preauth)
	}
}
