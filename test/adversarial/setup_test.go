package adversarial

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// A case's database, role and interlock configuration, and running the
// interlock command itself.

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// common tables every case database has, owned by the case's role.
var commonSetup = []string{
	"CREATE TABLE orders(id int PRIMARY KEY, note text)",
	"INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 5) g",
	"CREATE TABLE victim(x int)",
	"INSERT INTO victim VALUES (1)",
	"CREATE TABLE audit(id serial PRIMARY KEY, msg text)",
}

func newRun(t *testing.T, cs *advCase, idx int, direct bool) *caseRun {
	c := &caseRun{t: t, cs: cs, idx: idx, direct: direct, directs: map[int]*rawpg.Conn{},
		runs: map[int]*clientProc{}, started: map[int]bool{}, jobStderr: map[int]string{}, jobEntries: map[int][]jEntry{},
		vars: map[string]string{}, hung: map[int]bool{}}
	suffix := "i"
	if direct {
		suffix = "d"
	}
	base := fmt.Sprintf("adv%02d%s_%s", idx, suffix, strings.Trim(nameRE.ReplaceAllString(strings.ToLower(cs.name), "_"), "_"))
	if len(base) > 60 {
		base = base[:60]
	}
	c.role, c.db, c.password = base, base, "pw-"+randHex(8)
	// A short directory: unix socket paths (the run's approvals socket)
	// must stay under 108 bytes, which t.TempDir's long names do not.
	dir, err := os.MkdirTemp("", "adv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.dir = dir
	os.Chmod(c.dir, 0o755)
	c.cfgPath = filepath.Join(c.dir, "interlock.yaml")
	c.journalPath = filepath.Join(c.dir, "journal.db")
	c.pin = "/sys/fs/bpf/interlock-adv-" + randHex(4)
	return c
}

// expand replaces the case's placeholders in SQL and YAML.
func (c *caseRun) expand(s string) string {
	return strings.NewReplacer("{{role}}", c.role, "{{db}}", c.db, "{{socket}}", srv.Socket,
		"{{port}}", strconv.Itoa(srv.Port), "{{host}}", srv.Host, "{{psql}}", psqlBin, "{{dir}}", c.dir).Replace(s)
}

func (c *caseRun) prepare() {
	t := c.t
	t.Helper()
	if out, err := srv.PSQL("postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", c.role, c.password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", c.db, c.role)); err != nil {
		t.Fatalf("create role and database: %v: %s", err, out)
	}
	var super []string
	for _, s := range c.cs.super {
		super = append(super, c.expand(s))
	}
	if len(super) > 0 {
		if out, err := srv.PSQL(c.db, super...); err != nil {
			t.Fatalf("superuser setup: %v: %s", err, out)
		}
	}
	setup := []string{"SET ROLE " + c.role}
	setup = append(setup, commonSetup...)
	for _, s := range c.cs.setup {
		setup = append(setup, c.expand(s))
	}
	if out, err := srv.PSQL(c.db, setup...); err != nil {
		t.Fatalf("setup as %s: %v: %s", c.role, err, out)
	}
	c.basePW, c.baseSettings = c.roleState()
}

// roleState is the held role's password hash and its settings.
func (c *caseRun) roleState() (pw, settings string) {
	pw = c.sql("SELECT md5(coalesce(rolpassword, '')) FROM pg_authid WHERE rolname = '{{role}}'")
	settings = c.sql("SELECT coalesce(string_agg(coalesce(d.datname, '*') || ':' || array_to_string(s.setconfig, ','), ';'), '') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = '{{role}}'")
	return pw, settings
}

// runFiles are the files of one `interlock run`'s configuration.
type runFiles struct {
	// cfg is the configuration file; dir holds the run's state directory
	// and control socket; journal and pin are the journal and the BPF pin
	// path the configuration names.
	cfg, dir, journal, pin string
}

// writeConfig writes the case's interlock configuration.
func (c *caseRun) writeConfig(policy string) {
	c.writeRunConfig(runFiles{cfg: c.cfgPath, dir: c.dir, journal: c.journalPath, pin: c.pin}, policy)
}

// writeRunConfig writes an interlock configuration for the case's target
// (the held role's password in the case's directory) with the given
// policy.
func (c *caseRun) writeRunConfig(f runFiles, policy string) {
	pw := filepath.Join(c.dir, "db.password")
	if err := os.WriteFile(pw, []byte(c.password+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\njournal:\n  path: %s\ncontrol:\n  socket: %s\nbpf:\n  pin_path: %s\nlog:\n  level: debug\n",
		filepath.Join(f.dir, "state"), f.journal, filepath.Join(f.dir, "run", "ctl.sock"), f.pin)
	if strings.TrimSpace(policy) != "" {
		b.WriteString("policy:\n")
		b.WriteString(strings.TrimRight(c.expand(strings.TrimLeft(policy, "\n")), "\n") + "\n")
	}
	fmt.Fprintf(&b, "targets:\n  - name: db\n    protocol: postgres\n    address: %q\n    credentials:\n      user: %s\n      password_file: %s\n    tls: disable\n",
		srv.Addr(), c.role, pw)
	if y := strings.Trim(c.cs.targetYAML, "\n"); y != "" {
		for _, l := range strings.Split(y, "\n") {
			b.WriteString("    " + strings.TrimLeft(l, " ") + "\n")
		}
	}
	if err := os.WriteFile(f.cfg, []byte(b.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if _, err := os.Stat(f.pin); err == nil {
			redirector.DetachPinned(f.pin)
		}
	})
}

// runAs runs interlock as another (unprivileged) user.
func runAs(user string, args ...string) (string, string, int) {
	cmd := exec.Command("runuser", append([]string{"-u", user, "--", interlockBin}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}

// runInterlock runs interlock as root.
func runInterlock(args ...string) (string, string, int) {
	cmd := exec.Command(interlockBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}
