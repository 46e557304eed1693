package evidence

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type testSigner struct {
	note.Signer
	verifier note.Verifier
	vkey     string
}

func testKey(t *testing.T) testSigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "interlock@test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testSigner{s, v, vkey}
}

// ParseCheckpoint accepts only the exact form SignCheckpoint writes.
func TestParseCheckpointStrict(t *testing.T) {
	s := testKey(t)
	cp, err := SignCheckpoint(s, Origin("abc"), 7, tlog.RecordHash([]byte("x")), time.Unix(0, 123))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCheckpoint(cp.Note, s.verifier)
	if err != nil || !SameTree(got, cp) || got.TimeNS != 123 || got.JournalID() != "abc" {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	other := testKey(t)
	extra, _ := SignCheckpoint(other, Origin("abc"), 7, cp.Root, time.Unix(0, 123))
	sigLine := string(extra.Note[strings.LastIndex(string(extra.Note), "\n— "):])
	for name, msg := range map[string]string{
		"extra signature":  string(cp.Note) + strings.TrimPrefix(sigLine, "\n"),
		"other key":        string(extra.Note),
		"changed size":     strings.Replace(string(cp.Note), "\n7\n", "\n8\n", 1),
		"trailing newline": string(cp.Note) + "\n",
		"no signature":     strings.SplitN(string(cp.Note), "\n\n", 2)[0] + "\n",
	} {
		if _, err := ParseCheckpoint([]byte(msg), s.verifier); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Flipping unused low bits of the last base64 digit of the signature
	// leaves the decoded bytes alone; the strict parse still refuses it.
	b := []byte(cp.Note)
	i := len(b) - 3 // last digit before "=\n"
	for _, c := range "AEIMQUYcgkosw048" {
		if byte(c) != b[i] {
			alt := append([]byte(nil), b...)
			alt[i] = byte(c)
			if _, err := ParseCheckpoint(alt, s.verifier); err == nil {
				t.Errorf("signature digit %q accepted", c)
			}
		}
	}
}
