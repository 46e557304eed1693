package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/test/testenv"
)

func TestStateDirCheck(t *testing.T) {
	testenv.RequireRoot(t) // the check wants root-owned files
	dir := filepath.Join(t.TempDir(), "state")
	if c := stateDirCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "does not exist yet") {
		t.Errorf("missing dir: %+v", c)
	}
	for mode, want := range map[os.FileMode]string{0o750: "ok", 0o700: "ok", 0o755: "warn", 0o770: "fail", 0o777: "fail"} {
		os.Mkdir(dir, 0o700)
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if c := stateDirCheck(dir); c.Status != want {
			t.Errorf("mode %04o: %+v, want %s", mode, c, want)
		}
	}
}

func TestKeysCheck(t *testing.T) {
	testenv.RequireRoot(t) // the check wants root-owned files
	dir := t.TempDir()
	if c := keysCheck(filepath.Join(dir, "missing")); c.Status != "ok" {
		t.Errorf("missing dir: %+v", c)
	}
	if c := keysCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "no key files") {
		t.Errorf("empty dir: %+v", c)
	}
	os.MkdirAll(filepath.Join(dir, "ssh"), 0o700)
	os.WriteFile(filepath.Join(dir, "signing.key"), []byte("k"), 0o600)
	os.WriteFile(filepath.Join(dir, "ssh", "ca.key"), []byte("k"), 0o400)
	os.WriteFile(filepath.Join(dir, "signing.pub"), []byte("k"), 0o644)
	if c := keysCheck(dir); c.Status != "ok" || !strings.Contains(c.Detail, "2 key file(s)") {
		t.Errorf("good keys: %+v", c)
	}
	os.Chmod(filepath.Join(dir, "ssh", "ca.key"), 0o640)
	c := keysCheck(dir)
	if c.Status != "fail" || !strings.Contains(c.Detail, "ca.key is mode 0640") || !strings.Contains(c.Fix, "chmod 600 "+filepath.Join(dir, "ssh", "ca.key")) {
		t.Errorf("group-readable key: %+v", c)
	}
}

func TestJudgePins(t *testing.T) {
	full := func(id uint64) []redirector.PinnedLink {
		var out []redirector.PinnedLink
		for _, p := range redirector.AttachedPrograms {
			out = append(out, redirector.PinnedLink{Name: p, CgroupID: id})
		}
		return out
	}
	if c := judgePins(check{}, 7, full(7)); c.Status != "ok" {
		t.Errorf("all attached: %+v", c)
	}
	if c := judgePins(check{}, 7, full(8)); c.Status != "fail" || !strings.Contains(c.Detail, "attached to cgroup id 8, not 7") {
		t.Errorf("wrong cgroup: %+v", c)
	}
	if c := judgePins(check{}, 7, full(0)); c.Status != "fail" || !strings.Contains(c.Detail, "defunct") {
		t.Errorf("defunct: %+v", c)
	}
	withoutConnect4 := slices.DeleteFunc(full(7), func(l redirector.PinnedLink) bool { return l.Name == "connect4" })
	if c := judgePins(check{}, 7, withoutConnect4); c.Status != "fail" || !strings.Contains(c.Detail, "connect4 is not pinned") {
		t.Errorf("missing program: %+v", c)
	}
	bad := append(full(7), redirector.PinnedLink{Name: "junk", Err: errors.New("not a link")})
	if c := judgePins(check{}, 7, bad); c.Status != "fail" || !strings.Contains(c.Detail, "junk: not a link") {
		t.Errorf("unreadable pin: %+v", c)
	}
}

func TestYamaCheck(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{"0\n": "warn", "1\n": "ok", "2\n": "ok", "3\n": "ok", "x\n": "warn"} {
		f := filepath.Join(dir, "ptrace_scope")
		os.WriteFile(f, []byte(body), 0o644)
		c := yamaCheck(f)
		if c.Status != want {
			t.Errorf("ptrace_scope %q: %+v, want %s", body, c, want)
		}
		if body == "0\n" && (!strings.Contains(c.Detail, "pidfd_getfd") || !strings.Contains(c.Fix, "kernel.yama.ptrace_scope=1")) {
			t.Errorf("ptrace_scope 0 does not say the risk and the fix: %+v", c)
		}
	}
	c := yamaCheck(filepath.Join(dir, "missing"))
	if c.Status != "warn" || !strings.Contains(c.Detail, "Yama LSM is not active") || !strings.Contains(c.Fix, "lsm=") {
		t.Errorf("no Yama: %+v", c)
	}
}

// TestCgroupAncestorsCheck: on real cgroups, an intercepted cgroup below
// one its user may write is flagged, with the cgroup to intercept instead.
func TestCgroupAncestorsCheck(t *testing.T) {
	testenv.RequireRoot(t)
	root, err := cgroupfs.Root()
	testenv.Require(t, "cgroup v2", err)
	top := fmt.Sprintf("/interlock-test-doctor-%d", os.Getpid())
	svc := top + "/svc"
	if err := os.MkdirAll(filepath.Join(root, svc), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(root, svc))
		os.Remove(filepath.Join(root, top))
	})
	if c := cgroupAncestorsCheck(root, svc); c.Status != "ok" {
		t.Errorf("root-only ancestors: %+v", c)
	}
	// systemd's delegation: the user owns the directory and its files.
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(root, top, f), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	c := cgroupAncestorsCheck(root, svc)
	if c.Status != "warn" || !strings.Contains(c.Detail, top+" (the directory is owned by uid 65534") ||
		!strings.Contains(c.Detail, "move itself there, out of interception") || !strings.Contains(c.Fix, "intercept "+top+" instead") {
		t.Errorf("delegated parent: %+v", c)
	}
	// The delegated cgroup itself is fine to intercept: moves stay inside.
	if c := cgroupAncestorsCheck(root, top); c.Status != "ok" {
		t.Errorf("the delegated cgroup itself: %+v", c)
	}
}

// fakeResolver answers per network ("ip4", "ip6", "ip").
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	ss, ok := f[network]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestTargetNameCoverage(t *testing.T) {
	targets := []config.TargetConfig{{Name: "db", Address: "db.example.test:5432"}}
	res := fakeResolver{"ip4": {"192.0.2.10", "192.0.2.11"}, "ip6": {"2001:db8::10"}, "ip": {"192.0.2.10"}}
	// Without a daemon, compared with one lookup for both families.
	cs := coverageProbe{resolver: res}.checks(context.Background(), targets)
	if len(cs) != 1 || cs[0].Status != "warn" || !strings.Contains(cs[0].Detail, "also resolves to 192.0.2.11, 2001:db8::10") {
		t.Fatalf("addresses beyond the resolved set: %+v", cs)
	}
	// With a daemon, compared with what it intercepts.
	all := map[string][]netip.AddrPort{"db": {
		netip.MustParseAddrPort("192.0.2.10:5432"), netip.MustParseAddrPort("192.0.2.11:5432"), netip.MustParseAddrPort("[2001:db8::10]:5432")}}
	cs = coverageProbe{resolver: res, intercepted: all}.checks(context.Background(), targets)
	if len(cs) != 1 || cs[0].Status != "ok" || !strings.Contains(cs[0].Detail, "the daemon intercepts all of them") {
		t.Errorf("all intercepted: %+v", cs)
	}
	all["db"] = all["db"][:2]
	cs = coverageProbe{resolver: res, intercepted: all}.checks(context.Background(), targets)
	if len(cs) != 1 || cs[0].Status != "warn" || !strings.Contains(cs[0].Detail, "also resolves to 2001:db8::10") {
		t.Errorf("AAAA not intercepted: %+v", cs)
	}
	cs = coverageProbe{resolver: fakeResolver{}}.checks(context.Background(), targets)
	if len(cs) != 1 || cs[0].Status != "warn" || !strings.Contains(cs[0].Detail, "no A or AAAA record") {
		t.Errorf("name that does not resolve: %+v", cs)
	}
}

// TestTargetListenerCoverage: with real listeners in this network
// namespace, a target on a local address whose port has a wildcard
// listener is reported reachable at the host's other addresses.
func TestTargetListenerCoverage(t *testing.T) {
	listen := func(network, addr string) int {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	local := redirector.LocalAddrs()
	probe := coverageProbe{resolver: net.DefaultResolver, local: local, procNet: "/proc/net"}
	ctx := context.Background()

	wild4 := listen("tcp4", "0.0.0.0:0")
	tg := []config.TargetConfig{{Name: "w4", Address: fmt.Sprintf("127.0.0.2:%d", wild4)}}
	cs := probe.checks(ctx, tg)
	if len(cs) != 1 || cs[0].Status != "warn" || !strings.Contains(cs[0].Detail, fmt.Sprintf("listens on 0.0.0.0:%d: reachable also at: ", wild4)) ||
		!strings.Contains(cs[0].Detail, fmt.Sprintf("127.0.0.0/8 port %d", wild4)) || strings.Contains(cs[0].Detail, "[::1]") {
		t.Fatalf("wildcard IPv4 listener: %+v", cs)
	}
	for _, a := range local {
		if a.Is4() && !a.IsLoopback() && !strings.Contains(cs[0].Detail, netip.AddrPortFrom(a, uint16(wild4)).String()) {
			t.Errorf("local address %s not listed: %s", a, cs[0].Detail)
		}
	}
	// The daemon's set decides what is intercepted; 127.0.0.0 stands for
	// the whole loopback net.
	set := []netip.AddrPort{netip.AddrPortFrom(redirector.LoopbackNet, uint16(wild4))}
	for _, a := range local {
		if a.Is4() && !a.IsLoopback() {
			set = append(set, netip.AddrPortFrom(a, uint16(wild4)))
		}
	}
	probe.intercepted = map[string][]netip.AddrPort{"w4": set}
	if cs := probe.checks(ctx, tg); len(cs) != 1 || cs[0].Status != "ok" {
		t.Errorf("all intercepted: %+v", cs)
	}
	probe.intercepted = map[string][]netip.AddrPort{"w4": {netip.MustParseAddrPort(tg[0].Address)}}
	if cs := probe.checks(ctx, tg); len(cs) != 1 || cs[0].Status != "warn" || !strings.Contains(cs[0].Detail, "the daemon does not intercept") {
		t.Errorf("only the configured address intercepted: %+v", cs)
	}
	probe.intercepted = nil

	// An IPv6 wildcard listener answers at ::1 and (dual stack) IPv4.
	wild6 := listen("tcp6", "[::]:0")
	cs = probe.checks(ctx, []config.TargetConfig{{Name: "w6", Address: fmt.Sprintf("[::1]:%d", wild6)}})
	if len(cs) != 1 || !strings.Contains(cs[0].Detail, fmt.Sprintf("listens on [::]:%d", wild6)) || !strings.Contains(cs[0].Detail, fmt.Sprintf("127.0.0.0/8 port %d", wild6)) {
		t.Errorf("wildcard IPv6 listener: %+v", cs)
	}

	// A listener on the target's address alone, and a target that is not
	// on this host: nothing to say.
	one := listen("tcp4", "127.0.0.2:0")
	if cs := probe.checks(ctx, []config.TargetConfig{{Name: "one", Address: fmt.Sprintf("127.0.0.2:%d", one)}}); len(cs) != 0 {
		t.Errorf("listener on one address: %+v", cs)
	}
	if cs := probe.checks(ctx, []config.TargetConfig{{Name: "far", Address: fmt.Sprintf("203.0.113.9:%d", wild4)}}); len(cs) != 0 {
		t.Errorf("remote target: %+v", cs)
	}
}

// TestJournalCheckModes: a journal the audit group may read is fine; one
// that group or others may write (its -wal included) fails with the fix.
func TestJournalCheckModes(t *testing.T) {
	testenv.RequireRoot(t) // the check wants a journal this user can write
	path := filepath.Join(t.TempDir(), "journal.db")
	for _, c := range []struct {
		db, wal os.FileMode
		want    string
	}{
		{0o640, 0o640, "ok"}, {0o600, 0o600, "ok"}, {0o644, 0o640, "ok"},
		{0o660, 0o640, "fail"}, {0o640, 0o662, "fail"},
	} {
		for p, m := range map[string]os.FileMode{path: c.db, path + "-wal": c.wal} {
			if err := os.WriteFile(p, nil, m); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
		got := journalCheck(path)
		if got.Status != c.want && !(c.want == "ok" && got.Status == "warn") {
			t.Errorf("db %04o wal %04o: %+v, want %s", c.db, c.wal, got, c.want)
		}
		if c.want == "fail" && !strings.Contains(got.Fix, "chmod go-w") {
			t.Errorf("db %04o wal %04o: no fix: %+v", c.db, c.wal, got)
		}
	}
}
