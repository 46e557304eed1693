package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// TestArgvSecretsNotJournaled: psql run under `interlock run` with a
// password in its connection URL, and a shell script with a password in a
// conninfo and in an assignment, through the kernel path to a real
// PostgreSQL. The secrets reach none of the journal's files (its WAL
// included, read while the daemon still writes it), no export, no log;
// the records keep the URL's user, the keyword and the marker, and say
// they were altered.
func TestArgvSecretsNotJournaled(t *testing.T) {
	srv := requirePG(t)
	psql := filepath.Join(srv.BinDir, "psql")
	for _, mode := range []string{"embedded", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, []target{pgTarget(t, "db", srv.Addr(), pgtest.AppPassword, "")}, "")
			var d *daemon
			if mode == "daemon" {
				d = e.startDaemon()
			}
			secrets := []string{argvSecret(t), argvSecret(t), argvSecret(t)}
			url := fmt.Sprintf("postgresql://%s:%s@%s:%d/%s?sslmode=disable", pgtest.AppUser, secrets[0], srv.Host, srv.Port, pgtest.AppDB)
			out, stderr, code := e.runUnder(psql, "-X", "-At", "-c", "SELECT 'url'", url)
			if code != 0 || strings.TrimSpace(out) != "url" {
				t.Fatalf("psql with a URL exited %d: %s %s", code, out, stderr)
			}
			script := fmt.Sprintf("PGPASSWORD=%s %s -X -At -c \"SELECT 'conninfo'\" '%s'",
				secrets[1], psql, conninfo(srv, "sslmode=disable password="+secrets[2]))
			out, stderr, code = e.runUnder("sh", "-c", script)
			if code != 0 || strings.TrimSpace(out) != "conninfo" {
				t.Fatalf("psql with a conninfo exited %d: %s %s", code, out, stderr)
			}

			// What the records say instead.
			var opens, runs int
			for _, en := range e.entries() {
				data := string(en.Data)
				switch en.Kind {
				case model.KindSessionOpen:
					if strings.Contains(data, `"cmdline":["`+psql) {
						opens++
						if !strings.Contains(data, `"cmdline_redacted":`) ||
							!(strings.Contains(data, "postgresql://"+pgtest.AppUser+":[redacted]@") || strings.Contains(data, "password=[redacted]")) {
							t.Errorf("session.open of psql does not show the redaction: %s", data)
						}
					}
				case model.KindRunStart:
					runs++
					if !strings.Contains(data, `"argv_redacted":`) || !strings.Contains(data, "[redacted]") {
						t.Errorf("run.start does not show the redaction: %s", data)
					}
				}
			}
			if opens != 2 || runs != 2 {
				t.Errorf("%d session.open of psql and %d run.start, want 2 and 2", opens, runs)
			}

			// Nowhere: the test's directory holds the journal, its WAL
			// (the daemon still runs), the state directory and the
			// exports; the bundle is read through its gzip and tar.
			bundle := filepath.Join(e.dir, "bundle.tar.gz")
			if _, stderr, code := e.interlock("journal", "export", "-q", "-c", e.cfgPath, "-o", bundle); code != 0 {
				t.Fatalf("journal export: %s", stderr)
			}
			ocsf := filepath.Join(e.dir, "events.ocsf.jsonl")
			if _, stderr, code := e.interlock("journal", "export", "-q", "-c", e.cfgPath, "--format", "ocsf", "-o", ocsf); code != 0 {
				t.Fatalf("journal export ocsf: %s", stderr)
			}
			if b, err := os.ReadFile(ocsf); err != nil || !bytes.Contains(b, []byte("[redacted]")) {
				t.Errorf("the OCSF export does not show the redaction (%v)", err)
			}
			if mode == "daemon" {
				if _, err := os.Stat(e.journal + "-wal"); err != nil {
					t.Errorf("no WAL to look into while the daemon runs: %v", err)
				}
			}
			scanned := 0
			err := filepath.WalkDir(e.dir, func(p string, de fs.DirEntry, err error) error {
				if err != nil || !de.Type().IsRegular() {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				scanned++
				argvNoSecret(t, p, b, secrets)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if scanned < 4 {
				t.Errorf("scanned only %d files", scanned)
			}
			for name, b := range testkit.ReadTarGz(t, bundle) {
				argvNoSecret(t, "the bundle's "+name, b, secrets)
			}
			if d != nil {
				argvNoSecret(t, "the daemon's log", []byte(d.stderr.String()), secrets)
			}
		})
	}
}

func argvSecret(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "argvSecret" + hex.EncodeToString(b[:])
}

func argvNoSecret(t *testing.T, where string, b []byte, secrets []string) {
	t.Helper()
	for i, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("secret %d is in %s", i, where)
		}
	}
}

// TestKubeExecSecretNotJournaled: a kubectl exec whose command carries a
// password runs in the pod as sent, and the password is in neither the
// k8s.request (its command nor its raw query), the k8s.exec, kubectl's
// own command line, nor any file of the journal.
func TestKubeExecSecretNotJournaled(t *testing.T) {
	k := newKubeEnv(t, "")
	secret := argvSecret(t)
	marker := "argv-marker-" + secret[len(secret)-8:]
	out, stderr, code := k.kubectl("alice", nil, "exec", kubetest.PodName, "--",
		"sh", "-c", "DB_PASSWORD="+secret+"; echo "+marker)
	if code != 0 || strings.TrimSpace(out) != marker {
		t.Fatalf("kubectl exec: exit %d: %s %s", code, out, stderr)
	}
	if n := k.c.Kubelet.ExecCount(secret); n != 1 {
		t.Errorf("the pod ran the command with its secret %d times, want 1", n)
	}
	var reqs, execs int
	for _, en := range k.entries() {
		data := string(en.Data)
		switch en.Kind {
		case model.KindK8sRequest:
			if strings.Contains(data, marker) {
				reqs++
				if !strings.Contains(data, `DB_PASSWORD=[redacted]`) || !strings.Contains(data, `DB_PASSWORD%3D%5Bredacted%5D`) || !strings.Contains(data, `"redacted":1`) {
					t.Errorf("k8s.request does not show the redaction: %s", data)
				}
			}
		case model.KindK8sExec:
			if strings.Contains(data, marker) {
				execs++
				if !strings.Contains(data, `DB_PASSWORD=[redacted]`) || !strings.Contains(data, `"redacted":1`) {
					t.Errorf("k8s.exec does not show the redaction: %s", data)
				}
			}
		}
	}
	if reqs == 0 || execs != 1 {
		t.Errorf("%d k8s.request and %d k8s.exec of the command", reqs, execs)
	}
	for _, f := range []string{k.journal, k.journal + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		argvNoSecret(t, f, b, []string{secret})
	}
}
