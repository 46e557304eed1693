package main

import (
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/journal/evidence"
)

// TestPinnedFleetSize: journal verify --hub asks for the bundle against
// the size of the pinned fleet checkpoint, read from the verified note
// with the fleet key, from its text without; a note it cannot read asks
// for nothing (the verifier then says why the pin fails).
func TestPinnedFleetSize(t *testing.T) {
	newKey := func(name string) (note.Signer, note.Verifier) {
		t.Helper()
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
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
		return s, v
	}
	signer, fleetKey := newKey("fleet")
	_, otherKey := newKey("other")
	cp, err := evidence.SignFleetCheckpoint(signer, "hub1", 17, tlog.Hash{1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		msg  []byte
		key  note.Verifier
		size int64
		ok   bool
	}{
		{"with the fleet key", cp.Note, fleetKey, 17, true},
		{"without a fleet key", cp.Note, nil, 17, true},
		{"signed by another key", cp.Note, otherKey, 0, false},
		{"not a checkpoint", []byte("hello\n"), nil, 0, false},
		{"a size that is not a number", []byte("interlock/fleet/hub1\nx\nroot\n\n— sig\n"), nil, 0, false},
		{"size 0", []byte("interlock/fleet/hub1\n0\nroot\n\n— sig\n"), nil, 0, false},
	} {
		if n, ok := pinnedFleetSize(c.msg, c.key); ok != c.ok || (ok && n != c.size) {
			t.Errorf("%s: %d %v, want %d %v", c.name, n, ok, c.size, c.ok)
		}
	}
}
