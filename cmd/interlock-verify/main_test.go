package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
)

var (
	golden = filepath.Join("..", "..", "journal", "evidence", "testdata", "all.bundle.tar.gz")
	pub    = filepath.Join("..", "..", "journal", "evidence", "testdata", "journal.pub")
)

func runVerify(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVerifiesAGoldenBundle(t *testing.T) {
	code, out, errOut := runVerify("--pubkey", pub, golden)
	if code != exitOK || !strings.Contains(out, ": OK, journal 471873b5078348df02db186ee7e0c3a4, entries 1 to 20") ||
		!strings.Contains(out, "signed by interlock@vm+b68a0df4") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, _ = runVerify("--json", golden)
	var rep struct {
		OK            bool   `json:"ok"`
		KeyFromBundle bool   `json:"key_from_bundle"`
		TreeRoot      string `json:"tree_root"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || !rep.OK || !rep.KeyFromBundle ||
		rep.TreeRoot != "711f5cd956ba786830a0a51eefcaf9e426eb451ab3c2209248c68747a855497d" {
		t.Fatalf("--json without --pubkey: exit %d, %+v, %v\n%s", code, rep, err, out)
	}
}

func TestRefusesAChangedBundle(t *testing.T) {
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	forged := filepath.Join(t.TempDir(), "forged.tar.gz")
	if err := os.WriteFile(forged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runVerify("--pubkey", pub, forged)
	if code != exitFailed || !strings.Contains(out, ": FAILED") {
		t.Fatalf("changed bundle: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// unsealGolden rewrites the golden bundle as one exported without the key:
// the same bytes after the header, whose extra field holds their digest
// instead of the signed seal.
func unsealGolden(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	xlen := int(binary.LittleEndian.Uint16(b[10:12]))
	rest := b[12+xlen:]
	sum := sha256.Sum256(rest)
	digest := "interlock bundle digest v1\n" + hex.EncodeToString(sum[:]) + "\n"
	hdr := append([]byte(nil), b[:10]...)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(4+len(digest)))
	hdr = append(hdr, 'I', 'L')
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(digest)))
	hdr = append(hdr, digest...)
	path := filepath.Join(t.TempDir(), "unsealed.tar.gz")
	if err := os.WriteFile(path, append(hdr, rest...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// An unsealed bundle fails unless --allow-unsealed, which says what it
// does not prove.
func TestUnsealedBundleNeedsTheFlag(t *testing.T) {
	unsealed := unsealGolden(t)
	code, out, errOut := runVerify("--pubkey", pub, unsealed)
	if code != exitFailed || !strings.Contains(out, ": FAILED") || !strings.Contains(out, "--allow-unsealed") {
		t.Fatalf("unsealed without the flag: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = runVerify("--pubkey", pub, "--allow-unsealed", unsealed)
	if code != exitOK || !strings.Contains(out, ": OK") || !strings.Contains(out, "the bundle itself is unsealed") ||
		!strings.Contains(out, "warning: unsealed") {
		t.Fatalf("unsealed with the flag: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, _ = runVerify("--json", "--allow-unsealed", golden)
	var rep struct {
		Sealed bool `json:"sealed"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || !rep.Sealed {
		t.Fatalf("a sealed bundle with --allow-unsealed: exit %d, %+v, %v", code, rep, err)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, exitOK, "usage: interlock-verify"},
		{nil, exitUsage, "give exactly one bundle"},
		{[]string{"--nope", golden}, exitUsage, "flag provided but not defined"},
		{[]string{"/nonexistent/bundle.tar.gz"}, exitNoInput, "no such file"},
		{[]string{"--pubkey", "/nonexistent/journal.pub", golden}, exitNoInput, "public key"},
		{[]string{"--checkpoint", "/nonexistent/cp", golden}, exitNoInput, "checkpoint"},
	} {
		code, out, errOut := runVerify(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%q: exit %d (want %d)\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, errOut)
		}
	}
}

var (
	fleetGolden = filepath.Join("..", "..", "journal", "evidence", "testdata", "fleet.bundle.gz")
	fleetPub    = filepath.Join("..", "..", "journal", "evidence", "testdata", "fleet.pub")
	hubPub      = filepath.Join("..", "..", "journal", "evidence", "testdata", "hub.pub")
)

func TestVerifiesAFleetBundle(t *testing.T) {
	code, out, errOut := runVerify("--fleet-key", fleetPub, "--hub-key", hubPub, fleetGolden)
	if code != exitOK || !strings.Contains(out, ": OK, hub hub1, 2 hosts, proven against the fleet checkpoint of 6 leaves") ||
		!strings.Contains(out, "host h1 (host1): journal j1, entries 1 to 10, 3 cosigned checkpoints") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// Another fleet key: the fleet checkpoint is not the one trusted.
	code, out, _ = runVerify("--fleet-key", pub, "--json", fleetGolden)
	var rep struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailed || rep.OK || !strings.Contains(rep.Reason, "not the key you trust") {
		t.Fatalf("another fleet key: exit %d, %+v, %v\n%s", code, rep, err, out)
	}
	if code, _, errOut := runVerify("--fleet-key", fleetPub, "--pubkey", pub, fleetGolden); code != exitUsage {
		t.Fatalf("--pubkey with --fleet-key: exit %d\n%s", code, errOut)
	}
	if code, _, _ := runVerify("--fleet-key", filepath.Join(t.TempDir(), "none"), fleetGolden); code != exitNoInput {
		t.Fatalf("missing fleet key: exit %d", code)
	}
}

// A fleet bundle with one entry's body changed fails, naming the host and
// the seq.
func TestRefusesAChangedFleetBundle(t *testing.T) {
	f, err := os.Open(fleetGolden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := evidence.ReadFleetBundle(f)
	if err != nil {
		t.Fatal(err)
	}
	e := &b.Hosts[0].Entries[3]
	e.Body = bytes.Replace(e.Body, []byte(`"n":4`), []byte(`"n":5`), 1)
	var buf bytes.Buffer
	if err := evidence.WriteFleetBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged.gz")
	if err := os.WriteFile(forged, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runVerify("--fleet-key", fleetPub, forged)
	if code != exitFailed || !strings.Contains(out, "FAILED at host h0 seq 4: host h0: entry 4's body does not hash to its leaf") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
