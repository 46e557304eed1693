package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

const transferSize = 100 << 20

// randomFile writes size random bytes and returns the file's SHA-256.
func randomFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("%v", err)
		return ""
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// TestSSHScpAndSftpTransfers: scp and sftp upload and download 100 MiB
// through interlock; the checksums match, and the journal lists the sftp
// operations (scp speaks sftp since OpenSSH 9) with their paths and byte
// counts.
func TestSSHScpAndSftpTransfers(t *testing.T) {
	st := startSSHD(t)
	e := newSSHEnv(t, st, sshTargetOpts{})
	local := t.TempDir()
	remote := filepath.Join(st.dir, "remote")
	if err := os.Mkdir(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(local, "src.bin")
	sum := randomFile(t, src, transferSize)
	port := strconv.Itoa(st.port)
	scp := append(append([]string{"scp"}, st.clientOpts("")...), "-P", port)
	sftp := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", port)
	batch := filepath.Join(local, "batch")
	os.WriteFile(batch, []byte(fmt.Sprintf(`put %s %s/sftp-up.bin
mkdir %s/dir
rename %s/sftp-up.bin %s/dir/moved.bin
chmod 600 %s/dir/moved.bin
get %s/dir/moved.bin %s/sftp-down.bin
rm %s/scp-up.bin
`, src, remote, remote, remote, remote, remote, remote, local, remote)), 0o644)
	script := strings.Join([]string{
		shellQuote(append(scp, src, "root@127.0.0.3:"+remote+"/scp-up.bin")),
		shellQuote(append(scp, "root@127.0.0.3:"+remote+"/scp-up.bin", local+"/scp-down.bin")),
		shellQuote(append(sftp, "-b", batch, "root@127.0.0.3")),
	}, " && ")
	out, stderr, code := e.runUnder("sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	for _, f := range []string{local + "/scp-down.bin", remote + "/dir/moved.bin", local + "/sftp-down.bin"} {
		if got := fileSHA256(t, f); got != sum {
			t.Errorf("%s: sha256 %s, want %s", f, got, sum)
		}
	}
	if _, err := os.Stat(remote + "/scp-up.bin"); err == nil {
		t.Error("rm through sftp did not remove scp-up.bin")
	}

	var ops []string
	for _, op := range entriesOf[model.SSHSFTP](e, model.KindSSHSFTP) {
		s := op.Op + " " + strings.TrimPrefix(op.Path, remote)
		if op.Target != "" {
			s += " -> " + strings.TrimPrefix(op.Target, remote)
		}
		s += " " + op.Status
		if op.Op == "close" {
			s += fmt.Sprintf(" read=%d written=%d", op.BytesRead, op.BytesWritten)
		}
		if op.Decision.Action != model.Allow {
			t.Errorf("%s: %+v", s, op.Decision)
		}
		ops = append(ops, s)
	}
	all := strings.Join(ops, "\n")
	n := strconv.Itoa(transferSize)
	for _, want := range []string{
		"open /scp-up.bin ok",
		"close /scp-up.bin ok read=0 written=" + n,
		"close /scp-up.bin ok read=" + n + " written=0",
		"open /sftp-up.bin ok",
		"close /sftp-up.bin ok read=0 written=" + n,
		"mkdir /dir ok",
		"rename /sftp-up.bin -> /dir/moved.bin ok",
		"setstat /dir/moved.bin ok",
		"close /dir/moved.bin ok read=" + n + " written=0",
		"remove /scp-up.bin ok",
	} {
		if !strings.Contains(all, want+"\n") && !strings.HasSuffix(all, want) {
			t.Errorf("journal lacks %q; sftp operations:\n%s", want, all)
		}
	}
	// Three sessions, each opening the sftp subsystem (synced first).
	var subsystems int
	for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
		if q.Type == "subsystem" && q.Command == "sftp" {
			subsystems++
		}
	}
	if subsystems != 3 || st.started("subsystem 'sftp'") != 3 {
		t.Errorf("%d sftp subsystems journaled, %d started by sshd; want 3", subsystems, st.started("subsystem 'sftp'"))
	}
	// Byte counts at the end of each session.
	var up, down int64
	for _, c := range e.closes() {
		up += c.BytesUp
		down += c.BytesDown
	}
	if up < 2*transferSize || down < 2*transferSize {
		t.Errorf("session byte counts up %d down %d", up, down)
	}
}
