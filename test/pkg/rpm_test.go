package pkg

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The rpm's scriptlets: the same steps as the deb's maintainer scripts,
// and run for real by the host's rpm into the bookworm root (rpm --root
// runs them chrooted there), since no RPM-based root is at hand.

// scriptletHeader is how `rpm -qp --scripts` starts each scriptlet.
var scriptletHeader = regexp.MustCompile(`(?m)^(\w+) scriptlet \(using ([^)]*)\):\n`)

// rpmScriptlets returns the package's scriptlets by name (postinstall,
// preuninstall, ...), as `rpm -qp --scripts` shows them.
func rpmScriptlets(t *testing.T, rpm string) map[string]string {
	t.Helper()
	out := run(t, "rpm", "-qp", "--scripts", rpm)
	locs := scriptletHeader.FindAllStringSubmatchIndex(out, -1)
	if len(locs) == 0 {
		t.Fatalf("rpm -qp --scripts shows no scriptlet:\n%s", out)
	}
	scripts := map[string]string{}
	for i, l := range locs {
		end := len(out)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		name, interp := out[l[2]:l[3]], out[l[4]:l[5]]
		if interp != "/bin/sh" {
			t.Errorf("rpm %s scriptlet runs with %q, want /bin/sh", name, interp)
		}
		scripts[name] = strings.TrimRight(out[l[1]:end], "\n") + "\n"
	}
	return scripts
}

// commonFuncs are the functions common.sh defines, which both packages'
// scripts call.
func commonFuncs(common string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z_]+)\(\) \{$`).FindAllStringSubmatch(common, -1) {
		out = append(out, m[1])
	}
	return out
}

// calls lists the functions of common.sh a script calls outside its copy
// of common.sh, sorted.
func calls(body, common string, funcs []string) []string {
	own := strings.Replace(body, common, "", 1)
	var out []string
	for _, f := range funcs {
		if regexp.MustCompile(`\b` + f + `\b`).MatchString(own) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// TestRPMScriptsMatchDeb: the rpm's scriptlets hold the same common.sh as
// the deb's scripts (the group, the state directory's modes, the SSH CA's
// known_hosts line) and call the same steps of it at the same points, and
// parse as sh and as bash, which is /bin/sh on RPM systems.
func TestRPMScriptsMatchDeb(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "packaging", "scripts", "common.sh"))
	if err != nil {
		t.Fatal(err)
	}
	common := string(b)
	funcs := commonFuncs(common)
	for _, f := range []string{"make_audit_group", "make_state_dir", "trust_ssh_ca", "untrust_ssh_ca", "stop_and_detach"} {
		if !slices.Contains(funcs, f) {
			t.Fatalf("common.sh defines no %s (defines %v)", f, funcs)
		}
	}
	rpmScripts := rpmScriptlets(t, rpms[v1])
	var names []string
	for n := range rpmScripts {
		names = append(names, n)
	}
	slices.Sort(names)
	if strings.Join(names, " ") != "postinstall postuninstall preuninstall" {
		t.Errorf("rpm scriptlets %v, want postinstall, preuninstall and postuninstall", names)
	}
	for _, pair := range []struct{ deb, rpm string }{
		{"postinst", "postinstall"},
		{"prerm", "preuninstall"},
		{"postrm", "postuninstall"},
	} {
		debBody, rpmBody := debControl(t, debs[v1], pair.deb), rpmScripts[pair.rpm]
		for kind, body := range map[string]string{"deb " + pair.deb: debBody, "rpm " + pair.rpm: rpmBody} {
			if n := strings.Count(body, common); n != 1 {
				t.Errorf("%s holds common.sh %d times, want once", kind, n)
			}
		}
		debCalls, rpmCalls := calls(debBody, common, funcs), calls(rpmBody, common, funcs)
		if len(debCalls) == 0 || !slices.Equal(debCalls, rpmCalls) {
			t.Errorf("deb %s calls %v, rpm %s calls %v: want the same steps", pair.deb, debCalls, pair.rpm, rpmCalls)
		}
		for shell, args := range map[string][]string{"sh": {"-n"}, "bash": {"--posix", "-n"}} {
			cmd := exec.Command(shell, args...)
			cmd.Stdin = strings.NewReader(rpmBody)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("rpm %s: %s %v: %v\n%s", pair.rpm, shell, args, err, out)
			}
		}
	}
	// The group before the state directory that is chgrp'd to it, and the
	// state directory before the CA that is made in it.
	post := strings.Replace(rpmScripts["postinstall"], common, "", 1)
	at := func(f string) int {
		if l := regexp.MustCompile(`\b` + f + `\b`).FindStringIndex(post); l != nil {
			return l[0]
		}
		return -1
	}
	a, s, c := at("make_audit_group"), at("make_state_dir"), at("trust_ssh_ca")
	if a < 0 || a > s || s > c {
		t.Errorf("rpm postinstall does not make the group, then the state directory, then trust the CA:\n%s", post)
	}
}

// rpmIn runs the host's rpm on the root, with the root's own database
// (Debian's rpm would otherwise use ~/.rpmdb), and returns its output.
// The arguments are quoted for sh but may name $ROOT.
// --nodeps: the database knows nothing of the Debian packages that provide
// libc and /bin/sh.
func (c *chrootEnv) rpmIn(args ...string) string {
	c.t.Helper()
	script := `exec rpm --root "$ROOT" --dbpath /var/lib/rpm`
	for _, a := range args {
		script += ` "` + a + `"`
	}
	out, code := c.hostSh(script)
	if code != 0 {
		c.t.Fatalf("rpm %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestRPMInstallUpgradeErase installs the rpm into a bookworm root with
// the host's rpm, runs the binary, reinstalls and upgrades it over a
// modified config and an existing journal, erases it (state and config
// kept, the CA's line gone) and installs it again.
func TestRPMInstallUpgradeErase(t *testing.T) {
	c := newChroot(t)
	rpm1, rpm2 := "$ROOT"+c.put(rpms[v1]), "$ROOT"+c.put(rpms[v2])
	c.rpmIn("--initdb")

	out := c.rpmIn("-i", "--nodeps", rpm1)
	for _, want := range []string{"installed, not started (this host does not run systemd)", "/etc/interlock/interlock.yaml",
		"interlock doctor", "interlock daemon", "members of the group interlock can read the journal"} {
		if !strings.Contains(out, want) {
			t.Errorf("rpm -i output lacks %q:\n%s", want, out)
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
	const modes = "2750 root:interlock\n644 root:root\n755 root:root\n"
	modesNow := func() string {
		return c.must(`stat -c '%a %U:%G' /var/lib/interlock /etc/interlock/interlock.yaml /usr/bin/interlock`)
	}
	if got := modesNow(); got != modes {
		t.Errorf("modes after install:\n%s", got)
	}
	// Debian's rpm warns on stderr that it should not install packages.
	var configs []string
	for _, l := range strings.Split(c.rpmIn("-qc", "interlock"), "\n") {
		if strings.HasPrefix(l, "/") {
			configs = append(configs, l)
		}
	}
	if !slices.Equal(configs, []string{"/etc/interlock/interlock.yaml"}) {
		t.Errorf("rpm -qc: %q, want the config alone", configs)
	}

	// A journal with real records, a signing key, and a config the admin
	// changed, as in the deb's test.
	c.must(`interlock run -q -- true && test -s /var/lib/interlock/journal.db && interlock journal verify -q`)
	auditGroupReads(t, c)
	c.must(`umask 077; echo secret > /var/lib/interlock/test-signing.key`)
	c.must(`echo '# changed by the admin' >> /etc/interlock/interlock.yaml`)
	before := c.state()

	c.rpmIn("-U", "--replacepkgs", "--nodeps", rpm1) // reinstall
	if got := c.state(); got != before {
		t.Errorf("reinstall changed the state: %+v, was %+v", got, before)
	}
	knownHostsHasCA(t, c, caLine)

	c.rpmIn("-U", "--nodeps", rpm2) // upgrade: the old package's scriptlets run with $1=1
	if got := c.must("interlock version"); strings.TrimSpace(got) != "interlock "+v2 {
		t.Errorf("after upgrade, interlock version = %q", got)
	}
	if got := c.state(); got != before {
		t.Errorf("upgrade changed the state: %+v, was %+v", got, before)
	}
	if got := modesNow(); got != modes {
		t.Errorf("modes after upgrade:\n%s", got)
	}
	c.must("test ! -e /etc/interlock/interlock.yaml.rpmnew && test ! -e /etc/interlock/interlock.yaml.rpmsave")
	c.must("interlock journal verify -q")
	knownHostsHasCA(t, c, caLine)

	c.rpmIn("-e", "interlock") // erase: no purge in rpm, the state stays
	c.must("test ! -e /usr/bin/interlock")
	if out, code := c.hostSh(`rpm --root "$ROOT" --dbpath /var/lib/rpm -q interlock`); code == 0 {
		t.Errorf("after erase, rpm still knows interlock: %s", out)
	}
	if got := c.must("sha256sum /var/lib/interlock/journal.db /var/lib/interlock/test-signing.key | cut -d' ' -f1; stat -c %a /var/lib/interlock"); got != before.journal+"\n"+before.key+"\n"+before.stateMode+"\n" {
		t.Errorf("erase changed the state: %q, was %+v", got, before)
	}
	if got := c.must("sha256sum /etc/interlock/interlock.yaml.rpmsave | cut -d' ' -f1"); strings.TrimSpace(got) != before.config {
		t.Errorf("erase did not keep the changed config as .rpmsave: %q", got)
	}
	if got := c.must("cat /etc/ssh/ssh_known_hosts"); got != "[admin.example]:22 ssh-ed25519 AAAAadmin\n" {
		t.Errorf("after erase, /etc/ssh/ssh_known_hosts is %q: want the admin's line alone", got)
	}

	c.rpmIn("-i", "--nodeps", rpm2) // back after erase: the same CA, the journal kept
	if got := c.must("sha256sum /var/lib/interlock/journal.db /var/lib/interlock/test-signing.key | cut -d' ' -f1"); got != before.journal+"\n"+before.key+"\n" {
		t.Errorf("reinstall after erase changed the state: %q, was %+v", got, before)
	}
	if got := modesNow(); got != modes {
		t.Errorf("modes after reinstall:\n%s", got)
	}
	knownHostsHasCA(t, c, caLine)
	c.must("interlock journal verify -q")
}
