package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// account is a throwaway system user of a test.
type account struct {
	name     string
	uid, gid uint32
	// groups are the supplementary groups its processes get, as a login
	// would give them.
	groups []uint32
}

// auditAccounts creates a system group standing for the package's
// interlock group (a name of its own, so a real installation's is never
// touched), a user in it and a user outside it; all three are deleted
// when the test ends.
func auditAccounts(t *testing.T) (group string, gid uint32, member, outsider account) {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	group = "ilaudit" + suffix
	sh := func(argv ...string) {
		t.Helper()
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	sh("groupadd", "--system", group)
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gid = parseID(t, g.Gid)
	mk := func(name string, groups ...string) account {
		t.Helper()
		argv := []string{"useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--gid", "nogroup"}
		if len(groups) > 0 {
			argv = append(argv, "--groups", strings.Join(groups, ","))
		}
		sh(append(argv, name)...)
		t.Cleanup(func() { exec.Command("userdel", name).Run() })
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		a := account{name: name, uid: parseID(t, u.Uid), gid: parseID(t, u.Gid)}
		ids, err := u.GroupIds()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			a.groups = append(a.groups, parseID(t, id))
		}
		return a
	}
	return group, gid, mk("ilaudm"+suffix, group), mk("ilaudo" + suffix)
}

func parseID(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// as runs argv as a, with a's groups and a login's environment, from /.
func (a account) as(t *testing.T, argv ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent", "USER=" + a.name, "LOGNAME=" + a.name}
	cmd.Dir = "/"
	return runCmd(t, cmd)
}

// TestAuditGroupMemberWithoutRoot: with the state directory laid out as
// the package makes it (root:interlock, 2750), a member of the audit group,
// without root, lists, shows, replays and exports sessions of a journal a
// real daemon wrote (and goes on writing), and exports an evidence bundle
// that verifies offline with interlock-verify; the journal and everything
// beside it stay unwritable to the member. A user outside the group reads
// nothing and is told which group to join.
func TestAuditGroupMemberWithoutRoot(t *testing.T) {
	group, gid, member, outsider := auditAccounts(t)
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	stateDir := filepath.Join(e.dir, "audited")
	if err := os.Mkdir(stateDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(stateDir, 0, int(gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stateDir, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(stateDir, "journal.db")
	s := strings.Replace(string(cfg), "state_dir: "+filepath.Join(e.dir, "state"), "state_dir: "+stateDir, 1)
	s = strings.Replace(s, "path: "+e.journal, "path: "+journal, 1)
	if err := os.WriteFile(e.cfgPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	e.journal = journal
	e.startDaemon()
	if out, stderr, code := e.runUnder(st.sshArgv("echo audited-$((6*7)); echo audit-err >&2")...); code != 0 || out != "audited-42\n" {
		t.Fatalf("ssh under run: exit %d: %q %s", code, out, stderr)
	}
	id := sessionID(e, 0)
	if id == "" {
		t.Fatal("no ssh session journaled")
	}

	// What the daemon made: the journal root:GROUP 0640, -wal and -shm
	// alike; nothing there that the group or others may write; keys root's
	// alone.
	for _, f := range []string{"journal.db", "journal.db-wal", "journal.db-shm"} {
		fi, err := os.Stat(filepath.Join(stateDir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != gid {
			t.Errorf("%s: mode %v owner %d:%d, want 0640 0:%d", f, fi.Mode().Perm(), st.Uid, st.Gid, gid)
		}
	}
	err = filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		perm, uid := fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid
		if perm&0o022 != 0 || uid != 0 {
			t.Errorf("%s: mode %v owner %d: group or others may write it, or it is not root's", p, perm, uid)
		}
		if strings.HasSuffix(p, ".key") && perm != 0o600 {
			t.Errorf("%s: a private key of mode %v", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The member reads while the daemon goes on writing: sessions opened
	// and closed, checkpoints signed, the WAL checkpointed.
	var wg sync.WaitGroup
	var runs atomic.Int32
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.runUnder(st.sshArgv("true")...)
			runs.Add(1)
		}
	})
	for i := 0; i < 3 || runs.Load() < 3; i++ {
		out, stderr, code := member.as(t, interlockBin, "sessions", "list", "--json", "-c", e.cfgPath)
		var list []struct {
			ID string `json:"id"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) == 0 {
			t.Fatalf("sessions list as a member: exit %d: %s %s", code, out, stderr)
		}
		if _, stderr, code := member.as(t, interlockBin, "journal", "verify", "-q", "-c", e.cfgPath); code != 0 {
			t.Fatalf("journal verify of the live journal as a member: exit %d: %s", code, stderr)
		}
	}
	close(stop)
	wg.Wait()

	show, stderr, code := member.as(t, interlockBin, "sessions", "show", "-c", e.cfgPath, id[:13])
	if code != 0 || !strings.Contains(show, `out "audited-42\n"`) || !strings.Contains(show, `err "audit-err\n"`) {
		t.Errorf("sessions show as a member: exit %d: %s %s", code, show, stderr)
	}
	replay, stderr, code := member.as(t, interlockBin, "sessions", "replay", "-c", e.cfgPath, "--speed", "100", id)
	if code != 0 || !strings.Contains(replay, "audited-42\r\n") || !strings.Contains(stderr, "replaying session "+id) {
		t.Errorf("sessions replay as a member: exit %d: %q %s", code, replay, stderr)
	}

	// Exports, into a directory of the member's own.
	outDir := filepath.Join(e.dir, "auditor")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(outDir, int(member.uid), int(member.gid))
	cast := filepath.Join(outDir, "session.cast")
	if _, stderr, code := member.as(t, interlockBin, "sessions", "export", "-c", e.cfgPath, "-o", cast, id); code != 0 {
		t.Errorf("sessions export as a member: exit %d: %s", code, stderr)
	} else if b, _ := os.ReadFile(cast); !strings.Contains(string(b), "audited-42") {
		t.Errorf("the member's asciicast lacks the output: %s", b)
	}
	ocsf := filepath.Join(outDir, "session.ocsf.jsonl")
	if _, stderr, code := member.as(t, interlockBin, "journal", "export", "-q", "-c", e.cfgPath, "--session", id, "--format", "ocsf", "-o", ocsf); code != 0 {
		t.Errorf("journal export --format ocsf as a member: exit %d: %s", code, stderr)
	} else if b, _ := os.ReadFile(ocsf); !strings.Contains(string(b), id) {
		t.Errorf("the member's OCSF export lacks the session:\n%s", b)
	}
	// The bundle: the member may not read the key, so it comes unsealed,
	// and says so.
	bundle := filepath.Join(outDir, "all.tar.gz")
	_, stderr, code = member.as(t, interlockBin, "journal", "export", "-q", "-c", e.cfgPath, "-o", bundle)
	if code != 0 || !strings.Contains(stderr, "wrote the unsealed bundle") || !strings.Contains(stderr, "is root's") || !strings.Contains(stderr, "--allow-unsealed") {
		t.Fatalf("journal export as a member: exit %d: %s", code, stderr)
	}
	sessionBundle := filepath.Join(outDir, "session.tar.gz")
	if _, stderr, code := member.as(t, interlockBin, "journal", "export", "-q", "-c", e.cfgPath, "--unsealed", "--session", id, "-o", sessionBundle); code != 0 {
		t.Fatalf("journal export --unsealed --session as a member: exit %d: %s", code, stderr)
	}
	// A key named on the command line must be read: no quiet downgrade.
	_, stderr, code = member.as(t, interlockBin, "journal", "export", "-q", "-c", e.cfgPath, "--key", filepath.Join(stateDir, "journal.key"), "-o", filepath.Join(outDir, "x.tar.gz"))
	if code != 77 || !strings.Contains(stderr, "only root may read") || !strings.Contains(stderr, "--unsealed") {
		t.Errorf("journal export --key as a member: exit %d: %s", code, stderr)
	}
	if _, stderr, code := member.as(t, interlockBin, "journal", "verify", "-q", "-c", e.cfgPath, "--bundle", bundle, "--allow-unsealed"); code != 0 {
		t.Errorf("journal verify --bundle as a member: exit %d: %s", code, stderr)
	}
	// Root's export of the same journal is sealed.
	sealed := filepath.Join(e.dir, "sealed.tar.gz")
	if _, stderr, code := e.interlock("journal", "export", "-q", "-c", e.cfgPath, "-o", sealed); code != 0 || strings.Contains(stderr, "unsealed") {
		t.Fatalf("journal export as root: exit %d: %s", code, stderr)
	}
	verifyOffline(t, e, outsider, filepath.Join(stateDir, "journal.pub"), bundle, sessionBundle, sealed)

	// Nothing the member can write.
	for _, f := range []string{"journal.db", "journal.db-wal", "journal.db-shm", "journal.pub", "journal.db.checkpoint", "new-file"} {
		p := filepath.Join(stateDir, f)
		if out, stderr, code := member.as(t, "sh", "-c", `echo x >> "$1"`, "sh", p); code == 0 {
			t.Errorf("a member of the audit group opened %s for writing: %s %s", p, out, stderr)
		}
	}
	if _, _, code := member.as(t, "sqlite3", journal, "DELETE FROM entries"); code == 0 {
		t.Error("a member of the audit group deleted entries")
	}

	// Outside the group: nothing, and the way in.
	for _, args := range [][]string{
		{"sessions", "list"}, {"sessions", "show", id}, {"sessions", "replay", id},
		{"journal", "verify"}, {"journal", "export", "-o", "/tmp/never.tar.gz"},
	} {
		argv := append([]string{interlockBin, args[0], args[1], "-c", e.cfgPath}, args[2:]...)
		_, stderr, code := outsider.as(t, argv...)
		if args[1] == "list" {
			t.Logf("a user outside the group is told: %s", stderr)
		}
		if code != 77 || !strings.Contains(stderr, "cannot read the journal "+journal) || !strings.Contains(stderr, "group "+group) ||
			!strings.Contains(stderr, "usermod -aG "+group+" "+outsider.name) {
			t.Errorf("%v as a user outside the audit group: exit %d: %s", args, code, stderr)
		}
	}
	// In the group's list but not in this login's groups (added after
	// logging in): told to log in again.
	stale := member
	stale.groups = []uint32{member.gid}
	if _, stderr, code := stale.as(t, interlockBin, "sessions", "list", "-c", e.cfgPath); code != 77 || !strings.Contains(stderr, "log in again") {
		t.Errorf("a member whose login predates the membership: exit %d: %s", code, stderr)
	}

	// And the journal still verifies, with every session.
	if out, stderr, code := e.interlock("journal", "verify", "-c", e.cfgPath); code != 0 {
		t.Fatalf("journal verify as root: %s %s", out, stderr)
	}
}

// verifyOffline checks the bundles with interlock-verify built as an
// auditor builds it (CGO_ENABLED=0), run by a user who may not read the
// journal, in a directory holding nothing but the bundles and the public
// key: the member's unsealed bundles verify only with --allow-unsealed,
// root's sealed one without.
func verifyOffline(t *testing.T, e *env, who account, pub string, unsealed, sessionBundle, sealed string) {
	t.Helper()
	verifyBin := filepath.Join(e.dir, "interlock-verify")
	build := exec.Command("go", "build", "-o", verifyBin, "../../cmd/interlock-verify")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build interlock-verify: %v: %s", err, out)
	}
	dir := filepath.Join(e.dir, "offline")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pub, unsealed, sessionBundle, sealed} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(filepath.Join(dir, filepath.Base(f)), int(who.uid), int(who.gid))
	}
	os.Chown(dir, int(who.uid), int(who.gid))
	at := func(f string) string { return filepath.Join(dir, filepath.Base(f)) }
	type report struct {
		OK       bool     `json:"ok"`
		Sealed   bool     `json:"sealed"`
		Reason   string   `json:"reason"`
		Warnings []string `json:"warnings"`
		Counts   struct {
			Entries  uint64 `json:"entries"`
			Sessions uint64 `json:"sessions"`
			Payloads uint64 `json:"payloads"`
		} `json:"counts"`
	}
	check := func(bundle string, allow bool) (report, int) {
		t.Helper()
		argv := []string{verifyBin, "--json", "--pubkey", at(pub)}
		if allow {
			argv = append(argv, "--allow-unsealed")
		}
		out, stderr, code := who.as(t, append(argv, at(bundle))...)
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("interlock-verify %s: exit %d: %v: %s %s", bundle, code, err, out, stderr)
		}
		return r, code
	}
	if r, code := check(unsealed, false); code != 1 || r.OK || !strings.Contains(r.Reason, "unsealed") || !strings.Contains(r.Reason, "--allow-unsealed") {
		t.Errorf("the member's bundle without --allow-unsealed: exit %d %+v", code, r)
	}
	r, code := check(unsealed, true)
	if code != 0 || !r.OK || r.Sealed || r.Counts.Sessions < 2 || r.Counts.Payloads == 0 || len(r.Warnings) == 0 {
		t.Errorf("the member's bundle with --allow-unsealed: exit %d %+v", code, r)
	}
	if r, code := check(sessionBundle, true); code != 0 || !r.OK || r.Counts.Sessions != 1 || !strings.Contains(strings.Join(r.Warnings, " "), "every entry the selection matches") {
		t.Errorf("the member's session bundle: exit %d %+v", code, r)
	}
	if r, code := check(sealed, false); code != 0 || !r.OK || !r.Sealed {
		t.Errorf("root's sealed bundle: exit %d %+v", code, r)
	}
	// One byte changed in the member's bundle fails it.
	b, err := os.ReadFile(at(unsealed))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(at(unsealed), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, code := check(unsealed, true); code != 1 || r.OK {
		t.Errorf("the member's bundle with a byte changed: exit %d %+v", code, r)
	}
}
