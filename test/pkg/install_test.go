package pkg

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
)

// cacheDir holds the debootstrapped bookworm root between runs.
func cacheDir() string {
	if d := os.Getenv("INTERLOCK_PKGTEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/interlock-pkgtest"
}

// debianMirror is the mirror apt uses here (debootstrap needs one), or
// INTERLOCK_DEBIAN_MIRROR.
func debianMirror() string {
	if m := os.Getenv("INTERLOCK_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			var uris []string
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uris = strings.Fields(v)
			} else if strings.HasPrefix(line, "deb ") {
				for _, w := range strings.Fields(line)[1:] {
					if strings.Contains(w, "://") {
						uris = append(uris, w)
						break
					}
				}
			}
			for _, u := range uris {
				if strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
					f.Close()
					return u
				}
			}
		}
		f.Close()
	}
	return "http://deb.debian.org/debian"
}

// bookwormRoot returns the cached Debian bookworm root, making it with
// debootstrap when it is missing or was left half made.
func bookwormRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(cacheDir(), "bookworm")
	marker := filepath.Join(root, ".interlock-pkgtest-complete")
	if _, err := os.Stat(marker); err == nil {
		return root
	}
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cacheDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	mirror := debianMirror()
	t.Logf("no cached bookworm root: debootstrap from %s into %s", mirror, root)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "bookworm", tmp, mirror).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap: %v\n%s", err, testkit.Tail(string(out), 3000))
	}
	t.Logf("debootstrap took %s", time.Since(start).Round(time.Second))
	if err := os.WriteFile(filepath.Join(tmp, ".interlock-pkgtest-complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	return root
}

// chrootEnv is a throwaway Debian root: an overlay over the cached one.
type chrootEnv struct {
	t                          *testing.T
	lower, upper, work, merged string
}

func newChroot(t *testing.T) *chrootEnv {
	t.Helper()
	dir := t.TempDir()
	c := &chrootEnv{t: t, lower: bookwormRoot(t)}
	c.upper, c.work, c.merged = filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{c.upper, c.work, c.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// put copies a host file into the root's /tmp.
func (c *chrootEnv) put(src string) string {
	c.t.Helper()
	dst := filepath.Join(c.upper, "tmp", filepath.Base(src))
	if err := os.MkdirAll(filepath.Dir(dst), 0o1777); err != nil {
		c.t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		c.t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		c.t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		c.t.Fatal(err)
	}
	return "/tmp/" + filepath.Base(src)
}

// sh runs a script in the root (with /proc, /sys and /dev from the host)
// inside a private mount namespace, and returns its output and exit code.
func (c *chrootEnv) sh(script string) (string, int) {
	c.t.Helper()
	return c.mounted(`exec chroot "$1" /bin/sh -c "$5"`, script)
}

// hostSh runs a script on the host with the root mounted (as for sh) at
// $ROOT: for tools that work on a root from outside it (rpm --root, since
// the Debian root has no rpm of its own).
func (c *chrootEnv) hostSh(script string) (string, int) {
	c.t.Helper()
	return c.mounted(`export ROOT="$1"; exec /bin/sh -c "$5"`, script)
}

// mounted mounts the root in a private mount namespace and runs then, a
// line of sh that finds the root in $1 and the script in $5.
func (c *chrootEnv) mounted(then, script string) (string, int) {
	c.t.Helper()
	const setup = `set -e
mount -t overlay overlay -o "lowerdir=$2,upperdir=$3,workdir=$4" "$1"
mount -t proc proc "$1/proc"
mount --rbind /sys "$1/sys"
mount --rbind /dev "$1/dev"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", setup+then, "sh", c.merged, c.lower, c.upper, c.work, script)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("chroot: %v", err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// must runs a script that has to succeed.
func (c *chrootEnv) must(script string) string {
	c.t.Helper()
	out, code := c.sh(script)
	if code != 0 {
		c.t.Fatalf("in the bookworm root, %q exited %d:\n%s", script, code, out)
	}
	return out
}

// state is what must survive reinstall and upgrade.
type state struct{ config, journal, key, stateMode string }

func (c *chrootEnv) state() state {
	c.t.Helper()
	out := c.must(`sha256sum /etc/interlock/interlock.yaml /var/lib/interlock/journal.db /var/lib/interlock/test-signing.key | cut -d' ' -f1; stat -c %a /var/lib/interlock`)
	f := strings.Fields(out)
	if len(f) != 4 {
		c.t.Fatalf("state: %q", out)
	}
	return state{f[0], f[1], f[2], f[3]}
}

type doctorCheck struct {
	Name, Status, Detail, Fix string
}

// TestDebInstallUpgradePurge installs the .deb into a bookworm root, runs
// the binary, reinstalls and upgrades it over a modified config and an
// existing journal, removes it (state kept) and purges it (state gone).
func TestDebInstallUpgradePurge(t *testing.T) {
	c := newChroot(t)
	deb1, deb2 := c.put(debs[v1]), c.put(debs[v2])

	out := c.must("dpkg -i " + deb1)
	// The root runs no systemd: the script says what to do next all the same.
	for _, want := range []string{"installed, not started (this host does not run systemd)", "/etc/interlock/interlock.yaml",
		"interlock doctor", "interlock daemon", "members of the group interlock can read the journal"} {
		if !strings.Contains(out, want) {
			t.Errorf("dpkg -i output lacks %q:\n%s", want, out)
		}
	}
	if got := c.must("getent group interlock | cut -d: -f1"); got != "interlock\n" {
		t.Errorf("no audit group: %q", got)
	}
	caLine := c.must("interlock ssh-ca host 2>/dev/null")
	if !strings.HasPrefix(caLine, "@cert-authority * ssh-ed25519 ") || !strings.HasSuffix(caLine, " interlock-ssh-ca\n") {
		t.Fatalf("interlock ssh-ca host: %q", caLine)
	}
	knownHostsHasCA(t, c, caLine)
	c.must(`echo '[admin.example]:22 ssh-ed25519 AAAAadmin' >> /etc/ssh/ssh_known_hosts`)
	if got := c.must("interlock version"); strings.TrimSpace(got) != "interlock "+v1 {
		t.Errorf("interlock version = %q, want interlock %s", got, v1)
	}
	if got := c.must(`stat -c '%a %U:%G' /var/lib/interlock /etc/interlock/interlock.yaml /usr/bin/interlock`); got != "2750 root:interlock\n644 root:root\n755 root:root\n" {
		t.Errorf("modes after install:\n%s", got)
	}
	if got := c.must(`dpkg-query -W -f='${Conffiles}' interlock`); !strings.Contains(got, "/etc/interlock/interlock.yaml ") {
		t.Errorf("dpkg does not treat the config as a conffile: %q", got)
	}
	if got := c.must("man -w interlock 2>/dev/null || ls /usr/share/man/man8/interlock.8.gz"); !strings.Contains(got, "interlock.8.gz") {
		t.Errorf("man page not installed: %q", got)
	}

	// doctor in the chroot: the kernel-facing checks run against the real
	// kernel (/sys is the host's), the install-facing ones against the
	// package's files. No daemon runs, so doctor may fail overall.
	checks := doctor(t, c)
	for name, want := range map[string]string{
		"kernel": "ok", "cgroup2": "ok", "privileges": "ok", "config": "ok", "journal": "ok", "state dir": "ok",
	} {
		if got, ok := checks[name]; !ok || got.Status != want {
			t.Errorf("doctor %q = %+v, want %s", name, got, want)
		}
	}
	if got := checks["config"]; !strings.Contains(got.Detail, "/etc/interlock/interlock.yaml") {
		t.Errorf("doctor did not read the packaged config: %+v", got)
	}

	// A journal with real records (an interlock run in the root), a signing
	// key, and a config the admin changed.
	c.must(`interlock run -q -- true && test -s /var/lib/interlock/journal.db && interlock journal verify -q`)
	auditGroupReads(t, c)
	c.must(`umask 077; echo secret > /var/lib/interlock/test-signing.key`)
	c.must(`sed -i 's/^  level: info /  level: debug/' /etc/interlock/interlock.yaml && grep -q '^  level: debug' /etc/interlock/interlock.yaml && echo '# changed by the admin' >> /etc/interlock/interlock.yaml`)
	before := c.state()

	c.must("dpkg -i " + deb1) // reinstall
	if got := c.state(); got != before {
		t.Errorf("reinstall changed the state: %+v, was %+v", got, before)
	}

	out = c.must("dpkg -i " + deb2) // upgrade
	if strings.Contains(out, "interlock.yaml.dpkg-") || strings.Contains(out, "Configuration file") {
		t.Errorf("upgrade asked about the config:\n%s", out)
	}
	if got := c.must("interlock version"); strings.TrimSpace(got) != "interlock "+v2 {
		t.Errorf("after upgrade, interlock version = %q", got)
	}
	if got := c.state(); got != before {
		t.Errorf("upgrade changed the state: %+v, was %+v", got, before)
	}
	c.must("interlock journal verify -q")
	knownHostsHasCA(t, c, caLine)

	c.must("dpkg -r interlock") // remove: config and state stay
	c.must("test ! -e /usr/bin/interlock")
	if got := c.must(`dpkg-query -W -f='${db:Status-Status}' interlock`); got != "config-files" {
		t.Errorf("after remove, package status %q, want config-files", got)
	}
	if got := c.state(); got != before {
		t.Errorf("remove changed the state: %+v, was %+v", got, before)
	}

	c.must("dpkg -i " + deb2) // back from config-files: the admin's config is kept
	if got := c.state(); got != before {
		t.Errorf("reinstall after remove changed the state: %+v, was %+v", got, before)
	}

	out = c.must("dpkg -P interlock") // purge: everything goes
	if !strings.Contains(out, "deleting /var/lib/interlock") {
		t.Errorf("purge did not say it deletes the state:\n%s", out)
	}
	c.must("test ! -e /var/lib/interlock && test ! -e /etc/interlock && test ! -e /usr/bin/interlock")
	if got := c.must("cat /etc/ssh/ssh_known_hosts"); got != "[admin.example]:22 ssh-ed25519 AAAAadmin\n" {
		t.Errorf("after purge, /etc/ssh/ssh_known_hosts is %q: want the admin's line alone", got)
	}
	if out, code := c.sh("dpkg-query -W -f='${db:Status-Status}' interlock"); code == 0 && strings.TrimSpace(out) != "not-installed" {
		t.Errorf("after purge, dpkg still knows interlock: %q", out)
	}
}

func doctor(t *testing.T, c *chrootEnv) map[string]doctorCheck {
	t.Helper()
	out, code := c.sh("interlock doctor --json 2>/dev/null")
	if code != 0 && code != 1 {
		t.Fatalf("interlock doctor exited %d:\n%s", code, out)
	}
	var list []doctorCheck
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	m := map[string]doctorCheck{}
	for _, ch := range list {
		m[ch.Name] = ch
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("doctor:\n%s", out)
	}
	return m
}

// auditGroupReads: a member of the interlock group lists sessions, shows
// one and verifies the journal without root, and writes none of its files;
// a user outside the group reads nothing.
func auditGroupReads(t *testing.T, c *chrootEnv) {
	t.Helper()
	c.must("id auditor >/dev/null 2>&1 || useradd --no-create-home --groups interlock auditor; id outsider >/dev/null 2>&1 || useradd --no-create-home outsider")
	if got := c.must(`stat -c '%a %U:%G' /var/lib/interlock/journal.db /var/lib/interlock/journal.db-wal /var/lib/interlock/journal.db-shm`); got != "640 root:interlock\n640 root:interlock\n640 root:interlock\n" {
		t.Errorf("journal files:\n%s", got)
	}
	out := c.must(`runuser -u auditor -- interlock sessions list --json && runuser -u auditor -- interlock journal verify -q && echo member-read-ok`)
	if !strings.Contains(out, "member-read-ok") || !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Errorf("a member of the interlock group could not read the journal:\n%s", out)
	}
	out = c.must(`install -d -o auditor /srv/audit && cd /srv/audit && runuser -u auditor -- interlock journal export -q --format ocsf -o /srv/audit/audit.jsonl && test -f /srv/audit/audit.jsonl && echo export-ok`)
	// No target in this root: the run's journal holds no session, so the
	// export is empty (the e2e TestAuditGroupReadsLiveJournal exports one).
	if !strings.Contains(out, "export-ok") || !strings.Contains(out, "wrote 0 OCSF events") {
		t.Errorf("a member could not export:\n%s", out)
	}
	for _, f := range []string{"journal.db", "journal.db-wal", "journal.db-shm", "journal.pub", "new"} {
		if out, code := c.sh(`runuser -u auditor -- sh -c 'echo x >> /var/lib/interlock/` + f + `'`); code == 0 {
			t.Errorf("a member of the interlock group wrote %s: %s", f, out)
		}
	}
	if out, code := c.sh(`runuser -u outsider -- interlock sessions list`); code == 0 || !strings.Contains(out, "permission denied") {
		t.Errorf("a user outside the group listed sessions (exit %d):\n%s", code, out)
	}
	c.must("userdel auditor; userdel outsider; rm -rf /srv/audit")
}

// knownHostsHasCA: the package put interlock's @cert-authority line in the
// system known_hosts once (reinstalls and upgrades do not repeat it).
func knownHostsHasCA(t *testing.T, c *chrootEnv, caLine string) {
	t.Helper()
	got := c.must("cat /etc/ssh/ssh_known_hosts")
	if n := strings.Count(got, caLine); n != 1 {
		t.Errorf("/etc/ssh/ssh_known_hosts holds interlock's CA line %d times:\n%s", n, got)
	}
}
