package e2e

// Issue 13, class 4 (file transfers): masking that fails closed on every
// path a file can take to the client. Real sftp and scp clients (and a raw
// sftp client) run under `interlock run` against a real sshd; each case
// checks what the client got and what the journal holds, and the journal
// (database and WAL) must never hold a secret of the files in the clear.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

const (
	tmEmail = "alice.secret@example.com"
	tmCard  = "4111 1111 1111 1111"
	tmAWS   = "AKIAIOSFODNN7EXAMPLE"
	tmKeyB1 = "MIIEowIBAAKCAQEAx1y5a3b4c5d6e7f8g9h0i1j2k3l4m5n6o7p8q9r0s1t2u3v4"
	tmKey   = "-----BEGIN RSA PRIVATE KEY-----\n" + tmKeyB1 + "\nw5x6y7z8A9B0C1D2E3F4G5H6I7J8K9L0M1N2O3P4Q5R6S7T8U9V0W1X2Y3Z4a5b6\n-----END RSA PRIVATE KEY-----\n"
)

// tmLeaks are the pieces of the secrets that must never be seen.
var tmLeaks = []string{tmEmail, "alice.secret", tmCard, "4111111111111111", "1111 1111 1111", tmAWS, tmKeyB1, "w5x6y7z8A9B0C1D2E3F4"}

// secretsText is a small file with one of each secret among plain lines.
func secretsText() []byte {
	return []byte("plain text line\ncontact " + tmEmail + " now\ncard " + tmCard + " end\naws " + tmAWS + " end\n" + tmKey + "last plain line\n")
}

// straddleFile puts secrets across the read boundaries clients use (32
// KiB for OpenSSH's sftp and the raw client; 64 KiB, 255 KiB and 256 KiB
// for larger read lengths), in filler that holds none.
func straddleFile() []byte {
	var b bytes.Buffer
	put := func(at int, s string) {
		for b.Len() < at {
			n := min(at-b.Len(), 64)
			if n > 1 {
				b.WriteString(strings.Repeat("x", n-1) + "\n")
			} else {
				b.WriteString(" ")
			}
		}
		b.WriteString(s)
	}
	put(32768-9, tmCard+" end\n")
	put(65536-100, "key:\n"+tmKey)
	put(2*32768-20+32768, "mail "+tmEmail+" end\n")
	put(255*1024-10, "aws "+tmAWS+" end\n")
	put(256*1024-5, "card "+tmCard+" end\n")
	// No line end at the end: the last word is not masked as a secret's
	// possible start, the file's end is known.
	put(300*1024, "the end")
	return b.Bytes()
}

// maskedView is the file as the masking of rule pii makes it when it is
// read whole, for comparing reads with: every secret filled with '*'.
func maskedView(t *testing.T, b []byte) []byte {
	t.Helper()
	out := slices.Clone(b)
	for _, s := range []string{tmEmail, tmCard, tmAWS} {
		for i := 0; ; {
			j := bytes.Index(out[i:], []byte(s))
			if j < 0 {
				break
			}
			copy(out[i+j:], bytes.Repeat([]byte("*"), len(s)))
			i += j + len(s)
		}
	}
	for i := 0; ; {
		j := bytes.Index(out[i:], []byte(strings.TrimSuffix(tmKey, "\n")))
		if j < 0 {
			break
		}
		k := []byte(strings.TrimSuffix(tmKey, "\n"))
		for n := range k {
			if k[n] != '\n' {
				k[n] = '*'
			}
		}
		copy(out[i+j:], k)
		i += j + len(k)
	}
	return out
}

// noLeak fails when got holds a piece of a secret.
func noLeak(t *testing.T, what string, got []byte) {
	t.Helper()
	for _, s := range tmLeaks {
		if bytes.Contains(got, []byte(s)) {
			t.Errorf("%s holds %q in the clear", what, s)
		}
	}
}

// journalHolds says which secrets the journal's database and WAL hold.
func journalHolds(t *testing.T, e *env) []string {
	t.Helper()
	raw, err := os.ReadFile(e.journal)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(e.journal + "-wal")
	raw = append(raw, wal...)
	var out []string
	for _, s := range tmLeaks {
		if bytes.Contains(raw, []byte(s)) {
			out = append(out, s)
		}
	}
	return out
}

// TestSSHAdversarialTransferMask: sftp and scp downloads under mask rules
// (issue 13 class 4): masked in place with their lengths kept when the
// rule is live, refused under transfers: refuse, refused when read out of
// order, and never journaled in the clear.
func TestSSHAdversarialTransferMask(t *testing.T) {
	st := startSSHD(t)
	dir := filepath.Join(st.dir, "srv")
	masked, vault, quiet, cel, pub := filepath.Join(dir, "masked"), filepath.Join(dir, "vault"), filepath.Join(dir, "quiet"), filepath.Join(dir, "cel"), filepath.Join(dir, "pub")
	for _, d := range []string{masked, vault, quiet, cel, pub} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secrets, straddle := secretsText(), straddleFile()
	for _, d := range []string{masked, vault, quiet, cel} {
		os.WriteFile(filepath.Join(d, "secrets.txt"), secrets, 0o644)
	}
	os.WriteFile(filepath.Join(masked, "straddle.txt"), straddle, 0o644)
	os.WriteFile(filepath.Join(masked, "move-me.txt"), secrets, 0o644)
	pubSum := randomFile(t, filepath.Join(pub, "random.bin"), 3<<20)
	if err := os.Symlink(filepath.Join(masked, "secrets.txt"), filepath.Join(pub, "link.txt")); err != nil {
		t.Fatal(err)
	}
	dets := "[email, card, cloud_key, private_key]"
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf(`policy:
  default: allow
  rules:
    - name: pii
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q]}}
      action: mask
      mask: {detectors: %s, live: true}
    - name: vault
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q]}}
      action: mask
      mask: {detectors: [email], transfers: refuse}
    - name: quiet
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q]}}
      action: mask
      mask: {detectors: %s}
    - name: cel
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q]}}
      when: 'identity.claimed["INTERLOCK_E2E_NO_SUCH_VAR"] == "x"'
      action: mask
      mask: {detectors: %s, live: true}
    - name: scp-pii
      match: {protocols: [ssh], operation: {kinds: [exec], commands: [%q]}}
      action: mask
      mask: {detectors: %s, live: true}
    - name: scp-vault
      match: {protocols: [ssh], operation: {kinds: [exec], commands: [%q]}}
      action: mask
      mask: {detectors: [email], transfers: refuse}
`, masked+"/*", dets, vault+"/*", quiet+"/*", dets, cel+"/*", dets, "scp *"+masked+"/*", dets, "scp *"+vault+"/*")})
	port := strconv.Itoa(st.port)
	local := t.TempDir()
	sftpGet := func(remote, to string, opts ...string) (string, int) {
		batch := filepath.Join(local, "batch")
		os.WriteFile(batch, []byte(fmt.Sprintf("get %s %s\n", remote, to)), 0o644)
		argv := append(append(append([]string{"timeout", "120", "sftp"}, st.clientOpts("")...), opts...), "-P", port, "-b", batch, "root@127.0.0.3")
		_, stderr, code := e.runUnder(argv...)
		return stderr, code
	}
	scp := func(legacy bool, remote, to string) (string, int) {
		// A masked stream whose framing broke would leave scp waiting.
		argv := append(append([]string{"timeout", "120", "scp"}, st.clientOpts("")...), "-P", port)
		if legacy {
			argv = append(argv, "-O")
		}
		_, stderr, code := e.runUnder(append(argv, "root@127.0.0.3:"+remote, to)...)
		return stderr, code
	}
	masks := func(rule string) map[string]int {
		out := map[string]int{}
		for _, m := range entriesOf[model.MaskDecision](e, model.KindSSHMask) {
			if m.Rule == rule {
				out[m.Detector] += m.Count
			}
		}
		return out
	}
	ops := func() []model.SSHSFTP { return entriesOf[model.SSHSFTP](e, model.KindSSHSFTP) }
	// maskedCopy checks a downloaded copy: as long as the original, the
	// plain parts intact, no secret.
	maskedCopy := func(t *testing.T, p string, orig []byte) []byte {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("no download: %v", err)
		}
		if len(got) != len(orig) {
			t.Errorf("%s: %d bytes, the original has %d", p, len(got), len(orig))
		}
		noLeak(t, p, got)
		if bytes.Equal(got, orig) {
			t.Errorf("%s came unmasked", p)
		}
		if !bytes.Contains(got, []byte("plain text line\n")) && bytes.Contains(orig, []byte("plain text line\n")) {
			t.Errorf("%s: plain text masked too: %q", p, got)
		}
		return got
	}

	t.Run("sftp get of a file with an email, a card, an AWS key and a PEM key is masked", func(t *testing.T) {
		to := filepath.Join(local, "sftp-secrets.txt")
		if stderr, code := sftpGet(filepath.Join(masked, "secrets.txt"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		got := maskedCopy(t, to, secrets)
		if !bytes.Contains(got, []byte("card ******************* end\n")) {
			t.Errorf("the card is not masked in place: %q", got)
		}
		m := masks("pii")
		for _, d := range []string{"email", "card", "cloud_key", "private_key"} {
			if m[d] < 1 {
				t.Errorf("no ssh.mask evidence for %s: %v", d, m)
			}
		}
		opened := slices.ContainsFunc(ops(), func(o model.SSHSFTP) bool {
			return o.Op == "open" && o.Path == filepath.Join(masked, "secrets.txt") && o.Decision.Action == model.Mask && o.Decision.Rule == "pii"
		})
		if !opened {
			t.Errorf("the open is not journaled as masked by pii")
		}
		for _, em := range entriesOf[model.MaskDecision](e, model.KindSSHMask) {
			if em.Rule == "pii" && !strings.Contains(em.Column, "sftp "+filepath.Join(masked, "secrets.txt")) {
				t.Errorf("ssh.mask entry does not name the file: %+v", em)
			}
		}
	})

	t.Run("secrets straddling the 32, 64, 255 and 256 KiB read boundaries are masked", func(t *testing.T) {
		to := filepath.Join(local, "straddle.txt")
		if stderr, code := sftpGet(filepath.Join(masked, "straddle.txt"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		if got := maskedCopy(t, to, straddle); !bytes.HasSuffix(got, []byte("\nthe end")) {
			t.Errorf("the file's last words were masked: %q", got[len(got)-20:])
		}
		to2 := filepath.Join(local, "straddle-scp.txt")
		if stderr, code := scp(false, filepath.Join(masked, "straddle.txt"), to2); code != 0 {
			t.Fatalf("scp exit %d: %s", code, stderr)
		}
		maskedCopy(t, to2, straddle)
	})

	t.Run("one read in flight, or odd read sizes: masked across every boundary", func(t *testing.T) {
		for i, opts := range [][]string{{"-R", "1"}, {"-B", "4099", "-R", "3"}} {
			to := filepath.Join(local, fmt.Sprintf("straddle-%d.txt", i))
			if stderr, code := sftpGet(filepath.Join(masked, "straddle.txt"), to, opts...); code != 0 {
				t.Fatalf("sftp %v exit %d: %s", opts, code, stderr)
			}
			maskedCopy(t, to, straddle)
		}
	})

	t.Run("a raw client reading out of order is refused, never sent clear", func(t *testing.T) {
		rc := startRawClient(t, e, st, "subsystem")
		rc.send(sftpPkt(sshFxpOpen, 1, filepath.Join(masked, "straddle.txt"), uint32(openRead), uint32(0)))
		typ, _, rest, ok := rc.reply()
		if !ok || typ != sshFxpHandle {
			t.Fatalf("open: type %d ok %v; stderr %s", typ, ok, rc.err.String())
		}
		h := string(rest[4 : 4+binary.BigEndian.Uint32(rest)])
		read := func(id uint32, off uint64) []byte {
			rc.send(sftpPkt(5, id, h, off, uint32(32768)))
			typ, got, rest, ok := rc.reply()
			if !ok || got != id {
				t.Fatalf("read %d: type %d id %d ok %v", id, typ, got, ok)
			}
			if typ == 101 {
				if code := binary.BigEndian.Uint32(rest); code != sshFxPermissionDenied {
					t.Errorf("read %d at %d: status %d, want permission denied", id, off, code)
				}
				return nil
			}
			return rest[4:]
		}
		if d := read(2, 32768); d != nil {
			t.Errorf("a read that skips the start of a masked file was answered with %d bytes", len(d))
		}
		// One read at a time: each reply waits for its continuation,
		// then goes with what may begin a secret masked.
		first := read(3, 0)
		second := read(4, 32768)
		if len(first) != 32768 || len(second) != 32768 {
			t.Fatalf("sequential reads got %d and %d bytes", len(first), len(second))
		}
		noLeak(t, "the sequential reads", append(slices.Clone(first), second...))
		if bytes.Contains(append(slices.Clone(first[len(first)-16:]), second[:16]...), []byte("4111")) {
			t.Errorf("a part of the straddling card in the clear: %q | %q", first[len(first)-16:], second[:16])
		}
		if d := read(5, 0); d != nil {
			t.Errorf("a read again from the start was answered")
		}
		if d := read(6, 65536+10); d != nil {
			t.Errorf("a read past a gap was answered")
		}
		rc.send(sftpPkt(sshFxpClose, 7, h))
		rc.status(7)
		rc.end()
		denied := 0
		for _, o := range ops() {
			if o.Op == "read" && o.Status == "denied" && o.Path == filepath.Join(masked, "straddle.txt") && o.Decision.Action == model.Deny && o.Decision.Rule == "pii" {
				denied++
			}
		}
		if denied != 3 {
			t.Errorf("%d refused reads journaled, want 3", denied)
		}
	})

	t.Run("pipelined raw reads are masked across their boundary", func(t *testing.T) {
		rc := startRawClient(t, e, st, "subsystem")
		rc.send(sftpPkt(sshFxpOpen, 1, filepath.Join(masked, "straddle.txt"), uint32(openRead), uint32(0)))
		typ, _, rest, ok := rc.reply()
		if !ok || typ != sshFxpHandle {
			t.Fatalf("open: type %d ok %v; stderr %s", typ, ok, rc.err.String())
		}
		h := string(rest[4 : 4+binary.BigEndian.Uint32(rest)])
		rc.send(sftpPkt(5, 2, h, uint64(0), uint32(32768)), sftpPkt(5, 3, h, uint64(32768), uint32(32768)), sftpPkt(5, 4, h, uint64(65536), uint32(32768)))
		var data []byte
		for i := 0; i < 3; i++ {
			typ, id, rest, ok := rc.reply()
			if !ok || typ != 103 || id != uint32(2+i) {
				t.Fatalf("reply %d: type %d id %d ok %v", i, typ, id, ok)
			}
			data = append(data, rest[4:]...)
		}
		if !bytes.Equal(data[:65536+32768], maskedView(t, straddle)[:65536+32768]) {
			t.Errorf("pipelined reads masked otherwise than the whole file")
		}
		noLeak(t, "the pipelined reads", data)
		rc.send(sftpPkt(sshFxpClose, 5, h))
		rc.status(5)
		rc.end()
	})

	t.Run("a hard link of a masked file out of its rule is refused", func(t *testing.T) {
		batch := filepath.Join(local, "batch-ln")
		os.WriteFile(batch, []byte(fmt.Sprintf("ln %s %s\n", filepath.Join(masked, "secrets.txt"), filepath.Join(pub, "hard.txt"))), 0o644)
		argv := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", port, "-b", batch, "root@127.0.0.3")
		if _, _, code := e.runUnder(argv...); code == 0 {
			t.Errorf("the hard link was made")
		}
		absent(t, filepath.Join(pub, "hard.txt"))
		found := slices.ContainsFunc(ops(), func(o model.SSHSFTP) bool {
			return o.Op == "link" && o.Status == "denied" && o.Decision.Rule == "pii"
		})
		if !found {
			t.Errorf("the refused link is not journaled")
		}
	})

	t.Run("sftp -s starting sftp-server by exec is masked too", func(t *testing.T) {
		to := filepath.Join(local, "exec-sftp.txt")
		batch := filepath.Join(local, "batch-s")
		os.WriteFile(batch, []byte(fmt.Sprintf("get %s %s\n", filepath.Join(masked, "secrets.txt"), to)), 0o644)
		argv := append(append([]string{"timeout", "120", "sftp"}, st.clientOpts("")...), "-P", port, "-s", "/usr/lib/openssh/sftp-server", "-b", batch, "root@127.0.0.3")
		if _, stderr, code := e.runUnder(argv...); code != 0 {
			t.Fatalf("sftp -s exit %d: %s", code, stderr)
		}
		maskedCopy(t, to, secrets)
	})

	t.Run("transfers: refuse refuses the sftp and scp downloads", func(t *testing.T) {
		to := filepath.Join(local, "vault.txt")
		if _, code := sftpGet(filepath.Join(vault, "secrets.txt"), to); code == 0 {
			t.Errorf("sftp get under transfers: refuse succeeded")
		}
		if _, code := scp(false, filepath.Join(vault, "secrets.txt"), to); code == 0 {
			t.Errorf("scp under transfers: refuse succeeded")
		}
		if b, err := os.ReadFile(to); err == nil && len(b) > 0 {
			t.Errorf("the refused file reached the client: %q", b)
		}
		n := 0
		for _, o := range ops() {
			if o.Op == "open" && o.Path == filepath.Join(vault, "secrets.txt") {
				if o.Status != "denied" || o.Decision.Rule != "vault" {
					t.Errorf("vault open journaled %s by %s", o.Status, o.Decision.Rule)
				}
				n++
			}
		}
		if n < 2 {
			t.Errorf("%d vault opens journaled, want 2", n)
		}
	})

	t.Run("scp -O download is masked with the scp framing intact", func(t *testing.T) {
		to := filepath.Join(local, "legacy.txt")
		if stderr, code := scp(true, filepath.Join(masked, "straddle.txt"), to); code != 0 {
			t.Fatalf("scp -O exit %d: %s", code, stderr)
		}
		maskedCopy(t, to, straddle)
		if m := masks("scp-pii"); m["card"] < 2 || m["private_key"] < 1 {
			t.Errorf("scp -O masking not journaled: %v", m)
		}
	})

	t.Run("scp -O download under transfers: refuse is refused", func(t *testing.T) {
		to := filepath.Join(local, "legacy-vault.txt")
		if _, code := scp(true, filepath.Join(vault, "secrets.txt"), to); code == 0 {
			t.Errorf("scp -O under transfers: refuse succeeded")
		}
		if b, err := os.ReadFile(to); err == nil && len(b) > 0 {
			t.Errorf("the refused file reached the client: %q", b)
		}
		refused := false
		for _, r := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
			if r.Type == "exec" && strings.Contains(r.Command, vault) && r.Decision.Action == model.Deny && r.Decision.Rule == "scp-vault" {
				refused = true
			}
		}
		if !refused {
			t.Errorf("the refused scp -f is not journaled as denied by scp-vault")
		}
	})

	t.Run("live: false leaves the download as it is and journals nothing of it", func(t *testing.T) {
		to := filepath.Join(local, "quiet.txt")
		if stderr, code := sftpGet(filepath.Join(quiet, "secrets.txt"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		if got, _ := os.ReadFile(to); !bytes.Equal(got, secrets) {
			t.Errorf("a rule that is not live changed the download: %q", got)
		}
	})

	t.Run("a rule whose identity condition cannot be evaluated still masks", func(t *testing.T) {
		to := filepath.Join(local, "cel.txt")
		if stderr, code := sftpGet(filepath.Join(cel, "secrets.txt"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		maskedCopy(t, to, secrets)
		if m := masks("cel"); m["email"] < 1 {
			t.Errorf("no ssh.mask evidence under rule cel: %v", m)
		}
	})

	t.Run("a symbolic link to a masked file is masked as the file", func(t *testing.T) {
		to := filepath.Join(local, "link.txt")
		if stderr, code := sftpGet(filepath.Join(pub, "link.txt"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		maskedCopy(t, to, secrets)
		viaLink := slices.ContainsFunc(ops(), func(o model.SSHSFTP) bool {
			return o.Op == "open" && o.Path == filepath.Join(pub, "link.txt") && o.RealPath == filepath.Join(masked, "secrets.txt") && o.Decision.Rule == "pii"
		})
		if !viaLink {
			t.Errorf("the open through the link is not journaled with its real path, masked by pii")
		}
	})

	t.Run("renaming a masked file out of its rule is refused", func(t *testing.T) {
		batch := filepath.Join(local, "batch-rename")
		os.WriteFile(batch, []byte(fmt.Sprintf("rename %s %s\n", filepath.Join(masked, "move-me.txt"), filepath.Join(pub, "moved.txt"))), 0o644)
		argv := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", port, "-b", batch, "root@127.0.0.3")
		if _, _, code := e.runUnder(argv...); code == 0 {
			t.Errorf("the rename went through")
		}
		absent(t, filepath.Join(pub, "moved.txt"))
		fileIs(t, filepath.Join(masked, "move-me.txt"), string(secrets))
		found := slices.ContainsFunc(ops(), func(o model.SSHSFTP) bool {
			return o.Op == "rename" && o.Status == "denied" && o.Decision.Rule == "pii"
		})
		if !found {
			t.Errorf("the refused rename is not journaled")
		}
	})

	t.Run("a file no mask rule applies to downloads intact", func(t *testing.T) {
		to := filepath.Join(local, "random.bin")
		if stderr, code := sftpGet(filepath.Join(pub, "random.bin"), to); code != 0 {
			t.Fatalf("sftp exit %d: %s", code, stderr)
		}
		if got := fileSHA256(t, to); got != pubSum {
			t.Errorf("the unmasked file changed on the way")
		}
	})

	// Whatever the case, the journal never holds a secret in the clear,
	// nor does the evidence bundle an auditor gets (entries, payloads,
	// asciicast replays), as text or base64.
	if held := journalHolds(t, e); len(held) > 0 {
		t.Errorf("the journal holds %q in the clear", held)
	}
	bundle := filepath.Join(t.TempDir(), "evidence.tar.gz")
	if _, stderr, code := e.interlock("journal", "export", "-c", e.cfgPath, "--out", bundle); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	files := testkit.ReadTarGz(t, bundle)
	if len(files) == 0 {
		t.Fatalf("the bundle is empty")
	}
	// The scp -O download's recorded output is in it (the filler of
	// straddle.txt): the search reaches the payloads.
	payloads := false
	for _, b := range files {
		payloads = payloads || bytes.Contains(b, []byte(strings.Repeat("x", 40))) || bytes.Contains(b, []byte(strings.Repeat("eHh4", 10)))
	}
	if !payloads {
		t.Errorf("the bundle holds no recorded output of the scp -O download: the search proves nothing")
	}
	for name, b := range files {
		for _, sec := range tmLeaks {
			for _, form := range append([]string{sec}, base64Forms(sec)...) {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("the bundle's %s holds %q (as %q)", name, sec, form)
				}
			}
		}
	}
}

// base64Forms are the middles of s's base64 at each of the three byte
// alignments it can have in a longer payload.
func base64Forms(s string) []string {
	var out []string
	for k := 0; k < 3; k++ {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), s...))
		if len(enc) > 12 {
			out = append(out, enc[4:len(enc)-4])
		}
	}
	return out
}
