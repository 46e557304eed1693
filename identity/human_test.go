package identity

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

func TestUserChain(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	// nearest first, as ProcFacts.Parents
	sshLogin := []model.ProcessRef{
		{PID: 40, Exe: "/usr/bin/sudo", UID: 1001},
		{PID: 30, Exe: "/usr/bin/bash", UID: 1001},
		{PID: 20, Exe: "/usr/sbin/sshd", UID: 1001},
		{PID: 10, Exe: "/usr/sbin/sshd", UID: 0},
		{PID: 1, Exe: "/sbin/init", UID: 0},
	}
	cases := []struct {
		name    string
		parents []model.ProcessRef
		self    model.ProcessRef
		euid    uint32
		login   *uint32
		// euidUnread: status could not be read (euid is then 0).
		euidUnread bool
		want       []model.UserHop
		incomplete bool
	}{
		{name: "sudo after an ssh login: the login itself is not a hop", parents: sshLogin,
			self: model.ProcessRef{PID: 50, Exe: "/usr/bin/psql", UID: 1002}, euid: 1002, login: u(1001),
			want: []model.UserHop{{PID: 50, Via: "/usr/bin/sudo", FromUID: 1001, ToUID: 1002}}},
		{name: "no change", parents: sshLogin[1:],
			self: model.ProcessRef{PID: 50, Exe: "/usr/bin/psql", UID: 1001}, euid: 1001, login: u(1001)},
		{name: "no login: every change from pid 1", parents: []model.ProcessRef{{PID: 7, Exe: "/usr/sbin/cron", UID: 0}, {PID: 1, UID: 0}},
			self: model.ProcessRef{PID: 8, Exe: "/usr/bin/job", UID: 33}, euid: 33,
			want: []model.UserHop{{PID: 8, Via: "/usr/sbin/cron", FromUID: 0, ToUID: 33}}},
		{name: "su then sudo, outermost first", parents: []model.ProcessRef{
			{PID: 6, Exe: "/usr/bin/sudo", UID: 1002}, {PID: 5, Exe: "/usr/bin/bash", UID: 1002},
			{PID: 4, Exe: "/usr/bin/su", UID: 1001}, {PID: 3, Exe: "/usr/bin/bash", UID: 1001}},
			self: model.ProcessRef{PID: 7, Exe: "/usr/bin/psql", UID: 0}, euid: 0, login: u(1001),
			want: []model.UserHop{{PID: 5, Via: "/usr/bin/su", FromUID: 1001, ToUID: 1002}, {PID: 7, Via: "/usr/bin/sudo", FromUID: 1002, ToUID: 0}}},
		{name: "a setuid executable run by the process itself", parents: sshLogin[1:],
			self: model.ProcessRef{PID: 50, Exe: "/usr/local/bin/suidtool", UID: 1001}, euid: 0, login: u(1001),
			want: []model.UserHop{{PID: 50, Via: "/usr/local/bin/suidtool", FromUID: 1001, ToUID: 0}}},
		{name: "the process's status unread: no setuid hop to root made up", parents: sshLogin[1:],
			self: model.ProcessRef{PID: 50, Exe: "/usr/bin/psql", UID: 1001}, euid: 0, euidUnread: true, login: u(1001),
			incomplete: true},
		{name: "an ancestor's uid unread: no hop to or from it, the others kept", parents: []model.ProcessRef{
			{PID: 6, Exe: "/usr/bin/sudo", UID: 0, UIDUnread: true}, {PID: 5, Exe: "/usr/bin/bash", UID: 1002},
			{PID: 4, Exe: "/usr/bin/su", UID: 1001}, {PID: 3, Exe: "/usr/bin/bash", UID: 1001}},
			self: model.ProcessRef{PID: 7, Exe: "/usr/bin/psql", UID: 1002}, euid: 1002, login: u(1001),
			want:       []model.UserHop{{PID: 5, Via: "/usr/bin/su", FromUID: 1001, ToUID: 1002}},
			incomplete: true},
		{name: "an unread uid before the login: where the login was is not known", parents: []model.ProcessRef{
			{PID: 30, Exe: "/usr/bin/bash", UID: 1001}, {PID: 20, Exe: "/usr/sbin/sshd", UID: 0, UIDUnread: true},
			{PID: 10, Exe: "/usr/sbin/sshd", UID: 0}},
			self: model.ProcessRef{PID: 50, Exe: "/usr/bin/psql", UID: 1001}, euid: 1001, login: u(1001),
			incomplete: true},
		{name: "with a root login, an unread uid (read as 0) is skipped, not compared", parents: []model.ProcessRef{
			{PID: 30, Exe: "/usr/bin/sudo", UID: 0}, {PID: 20, Exe: "/usr/bin/bash", UID: 0, UIDUnread: true},
			{PID: 10, Exe: "/usr/sbin/sshd", UID: 0}},
			self: model.ProcessRef{PID: 50, Exe: "/usr/bin/psql", UID: 1002}, euid: 1002, login: u(0),
			want:       []model.UserHop{{PID: 50, Via: "/usr/bin/sudo", FromUID: 0, ToUID: 1002}},
			incomplete: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, incomplete := userChain(c.parents, c.self, c.euid, !c.euidUnread, c.login)
			if !reflect.DeepEqual(got, c.want) || incomplete != c.incomplete {
				t.Fatalf("chain %+v (incomplete %v), want %+v (incomplete %v)", got, incomplete, c.want, c.incomplete)
			}
		})
	}
}

// identTestLoginUnset fails unless the test itself descends from no
// login: the tests below compare a child with and without one.
func identTestLoginUnset(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/loginuid")
	testenv.Require(t, "/proc/self/loginuid (a kernel with audit support)", err)
	if strings.TrimSpace(string(b)) != "4294967295" {
		testenv.Require(t, "a test process without a login uid (run it from a service, not a login shell)",
			os.ErrExist)
	}
}

func identTestResolvePid(t *testing.T, r *Resolver, pid int) model.Identity {
	t.Helper()
	root := identTestCgroup2Root(t)
	k := model.KernelFacts{
		PID: uint32(pid), TGID: uint32(pid), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		CgroupID: identTestIno(t, root+identTestProcCgroup(t, pid)), ConnectBootNS: identTestBootNS(t),
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			v, _ := strconv.ParseUint(f[1], 10, 32)
			k.UID = uint32(v)
		}
	}
	id := r.Resolve(context.Background(), k)
	if id.Proc == nil {
		t.Fatalf("no proc facts: %s", id.ProcError)
	}
	return id
}

// TestResolveRealHuman: a process without a login is no_login; one whose
// login uid was set (as pam_loginuid does, by writing
// /proc/self/loginuid as root) carries it, with its session id, the
// login's name and the change of user below it, through the cached path
// too.
func TestResolveRealHuman(t *testing.T) {
	testenv.RequireRoot(t)
	identTestLoginUnset(t)
	r := NewResolver(ResolverOptions{})
	defer r.Close()

	plain := identTestStartSleep(t, "", []string{"PATH=/usr/bin"})
	id := identTestResolvePid(t, r, plain.Process.Pid)
	if h := id.Human; h == nil || !h.NoLogin || h.LoginUID != nil || h.Provenance != model.ProvProc {
		t.Fatalf("human of a process without a login: %+v", h)
	}

	// The login is made in a shell that then runs as nobody: sh sets its
	// login uid, and its child (the setpriv'd sh) forks sleep.
	cmd := exec.Command("/bin/sh", "-c",
		`echo 0 >/proc/self/loginuid && exec setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c 'sleep 30; :'`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sleepPid := identTestChild(t, cmd.Process.Pid, "sleep")
	sess, err := os.ReadFile("/proc/" + strconv.Itoa(sleepPid) + "/sessionid")
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // fresh, then cached
		id := identTestResolvePid(t, r, sleepPid)
		h := id.Human
		if h == nil || h.NoLogin || h.LoginUID == nil || *h.LoginUID != 0 || h.LoginUser != "root" || h.SessionID == nil {
			t.Fatalf("round %d: human %+v", round, h)
		}
		if strconv.FormatUint(uint64(*h.SessionID), 10) != strings.TrimSpace(string(sess)) {
			t.Fatalf("round %d: session %d, want %s", round, *h.SessionID, sess)
		}
		self, _ := os.Executable()
		want := []model.UserHop{{PID: uint32(cmd.Process.Pid), Via: self, FromUID: 0, FromUser: "root", ToUID: 65534, ToUser: "nobody"}}
		if !reflect.DeepEqual(h.Chain, want) {
			t.Fatalf("round %d: chain %+v, want %+v", round, h.Chain, want)
		}
	}
}

// TestHumanStatusUnread: with the status of the process and of its
// parent unreadable, their uids read as 0; the facts say they were not
// read, and the human's chain makes up no change of user to root from
// them but says it is incomplete.
func TestHumanStatusUnread(t *testing.T) {
	f := newIdentTestFake(t)
	f.tool.noStatus = true
	os.Remove(filepath.Join(f.proc, "100", "status"))
	os.Remove(filepath.Join(f.proc, "50", "status"))
	for pid, v := range map[string]string{"100": "1000", "50": "1000"} {
		for _, name := range []string{"loginuid", "sessionid"} {
			if err := os.WriteFile(filepath.Join(f.proc, pid, name), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.k.UID = 1000
	id := f.r.Resolve(context.Background(), f.k)
	if id.Proc == nil || !id.Proc.IDsUnread || len(id.Proc.Parents) != 2 || !id.Proc.Parents[0].UIDUnread || id.Proc.Parents[1].UIDUnread {
		t.Fatalf("proc facts %+v (%s): the unread ids are not marked", id.Proc, id.ProcError)
	}
	h := id.Human
	if h == nil || h.LoginUID == nil || *h.LoginUID != 1000 || len(h.Chain) != 0 || !h.ChainIncomplete {
		t.Fatalf("human %+v: want login 1000, no hop, an incomplete chain", h)
	}
}
