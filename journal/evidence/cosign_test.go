package evidence

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type testCosigner struct {
	note.Signer
	verifier note.Verifier
	vkey     string
}

func testHubKey(t *testing.T, name string) testCosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	ckey, err := CosignatureKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewCosignatureVerifier(ckey)
	if err != nil {
		t.Fatal(err)
	}
	return testCosigner{s, v, ckey}
}

func testHostCheckpoint(t *testing.T, s note.Signer, size int64, leaf string) Checkpoint {
	t.Helper()
	cp, err := SignCheckpoint(s, Origin("host1"), size, tlog.RecordHash([]byte(leaf)), time.Unix(1700000000, 5))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestCosignVerifies(t *testing.T) {
	host, hub := testKey(t), testHubKey(t, "hub.example")
	cp := testHostCheckpoint(t, host, 7, "x")
	at := time.Unix(1700000123, 0)
	msg, err := Cosign(cp.Note, hub.Signer, at)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, cp.Note) {
		t.Fatalf("the cosigned note does not start with the host's note:\n%s", msg)
	}
	got, when, err := VerifyCosigned(msg, host.verifier, hub.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if !SameTree(got, cp) || !bytes.Equal(got.Note, cp.Note) || !when.Equal(at) {
		t.Fatalf("got %+v at %v, want %+v at %v", got, when, cp, at)
	}
	// The key the hub publishes is type 0x04 and names the same key hash
	// as the line.
	if !strings.Contains(string(msg), "— hub.example ") || hub.verifier.KeyHash() != hub.KeyHash() {
		t.Fatalf("key hash %08x, line hash %08x", hub.verifier.KeyHash(), hub.KeyHash())
	}
	// Interoperability: transparency-dev's own verifier and timestamp
	// reader take the line.
	v, err := fnote.NewVerifierForCosignatureV1(hub.vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || !ts.Equal(at) {
		t.Fatalf("library reads time %v, %v", ts, err)
	}
	// And a cosignature made by the library's own signer verifies here.
	libHub := testHubKey(t, "lib.example")
	libMsg, err := note.Sign(&note.Note{Text: string(cp.Note[:bytes.Index(cp.Note, []byte("\n\n"))+1]),
		UnverifiedSigs: mustOpen(t, cp.Note, host.verifier).Sigs}, libHub.Signer.(*cosigner).Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyCosigned(libMsg, host.verifier, libHub.verifier); err != nil {
		t.Fatalf("the library's cosignature: %v", err)
	}
}

func mustOpen(t *testing.T, msg []byte, v note.Verifier) *note.Note {
	t.Helper()
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCosignRefused(t *testing.T) {
	host, hub := testKey(t), testHubKey(t, "hub.example")
	other := testHubKey(t, "hub.example")
	cp7 := testHostCheckpoint(t, host, 7, "x")
	cp8 := testHostCheckpoint(t, host, 8, "y")
	at := time.Unix(1700000123, 0)
	good, err := Cosign(cp7.Note, hub.Signer, at)
	if err != nil {
		t.Fatal(err)
	}
	cosig8, err := Cosign(cp8.Note, hub.Signer, at)
	if err != nil {
		t.Fatal(err)
	}
	byOther, err := Cosign(cp7.Note, other.Signer, at)
	if err != nil {
		t.Fatal(err)
	}
	lastLine := func(m []byte) []byte {
		i := bytes.LastIndex(m[:len(m)-1], []byte("\n"))
		return m[i+1:]
	}
	otherHost := testKey(t)
	for _, c := range []struct {
		name string
		msg  []byte
		host note.Verifier
		want string
	}{
		{"the cosignature of another checkpoint", append(append([]byte(nil), cp7.Note...), lastLine(cosig8)...), host.verifier, "not over this checkpoint"},
		{"a cosignature by another key", byOther, host.verifier, "no cosignature by the hub"},
		{"a changed body", bytes.Replace(good, []byte("\n7\n"), []byte("\n9\n"), 1), host.verifier, "does not verify"},
		{"no cosignature", cp7.Note, host.verifier, "no cosignature by the hub"},
		{"another host's key", good, otherHost.verifier, "not signed by"},
		{"a line added after", append(append([]byte(nil), good...), lastLine(byOther)...), host.verifier, "want two"},
		{"the lines swapped", append(append(bytes.Clone(good[:bytes.Index(good, []byte("\n\n"))+2]), lastLine(good)...), lastLine(cp7.Note)...), host.verifier, "canonical"},
	} {
		if _, _, err := VerifyCosigned(c.msg, c.host, hub.verifier); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := Cosign(good, hub.Signer, at); err == nil {
		t.Error("cosigning twice with one key succeeded")
	}
	if _, err := Cosign([]byte("not a note"), hub.Signer, at); err == nil {
		t.Error("cosigning a non-note succeeded")
	}
	if _, err := Cosign(cp7.Note, hub, at); err == nil {
		t.Error("a wrapped signer, which cannot stamp the time given, cosigned")
	}
}

func TestFleetCheckpoint(t *testing.T) {
	fleet := testKey(t)
	cp, err := SignFleetCheckpoint(fleet, "hub1", 3, FleetLeaf([]byte("n")), time.Unix(5, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFleetCheckpoint(cp.Note, fleet.verifier)
	if err != nil || !SameTree(got, cp) || got.HubID() != "hub1" || got.Origin != "interlock/fleet/hub1" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseCheckpoint(cp.Note, fleet.verifier); err == nil {
		t.Error("a fleet checkpoint passed for a host's")
	}
	host, err := SignCheckpoint(fleet, Origin("j"), 3, FleetLeaf([]byte("n")), time.Unix(5, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFleetCheckpoint(host.Note, fleet.verifier); err == nil {
		t.Error("a host checkpoint passed for a fleet's")
	}
	if _, err := ParseFleetCheckpoint(cp.Note, testKey(t).verifier); err == nil {
		t.Error("a fleet checkpoint verified with another key")
	}
}
