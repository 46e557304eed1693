package evidence

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/model"
)

// memHashes is a tlog.HashReader over stored hashes in memory.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// testFleet is a fleet of hosts, each with a journal of entries and
// checkpoints every few entries, all cosigned and in one fleet log.
type testFleet struct {
	bundle FleetBundle
	fleet  testSigner
}

func testBody(seq int64, kind, data string, commitment []byte) []byte {
	tail := AppendTail(nil, kind, "s1", []byte(data), commitment)
	return AppendBody(nil, uint64(seq), 1700000000000000000+seq, tail)
}

func newTestFleet(t *testing.T, hosts int, entries int64, every int64) testFleet {
	t.Helper()
	fleetKey := testKey(t)
	hub := testHubKey(t, "hub.example")
	var fleetStored memHashes
	var fleetSize int64
	b := FleetBundle{HubID: "hub1", FleetKey: vkeyOf(t, fleetKey), HubKey: hub.vkey}
	type pending struct{ host, cp int }
	var placed []pending
	for h := 0; h < hosts; h++ {
		skey, vkey, err := note.GenerateKey(rand.Reader, fmt.Sprintf("host%d", h))
		if err != nil {
			t.Fatal(err)
		}
		hostKey, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		jid := fmt.Sprintf("j%d", h)
		fh := FleetHost{HostID: fmt.Sprintf("h%d", h), HostName: fmt.Sprintf("host%d", h), JournalID: jid, JournalKey: vkey, FirstSeq: 1}
		var tree CompactRange
		for seq := int64(1); seq <= entries; seq++ {
			e := FleetEntry{Seq: seq}
			switch {
			case seq == 1:
				e.Body = testBody(seq, model.KindJournalOpen, fmt.Sprintf(`{"journal_id":%q,"encoding":1}`, jid), nil)
			case seq%3 == 0:
				e.Salt, e.Payload = bytes.Repeat([]byte{byte(seq)}, SaltSize), []byte(fmt.Sprintf("payload %d", seq))
				c := PayloadCommitment(e.Salt, e.Payload)
				e.Body = testBody(seq, "pg.result", `{"rows":1}`, c[:])
			default:
				e.Body = testBody(seq, "pg.statement", fmt.Sprintf(`{"n":%d}`, seq), nil)
			}
			e.Leaf = LeafHash(e.Body)
			tree.Add(e.Leaf)
			fh.Entries = append(fh.Entries, e)
			if seq%every == 0 || seq == entries {
				cp, err := SignCheckpoint(hostKey, Origin(jid), seq, tree.Root(), time.Unix(1700000000+seq, 0))
				if err != nil {
					t.Fatal(err)
				}
				cosigned, err := Cosign(cp.Note, hub.Signer, time.Unix(1700000000+seq, 0))
				if err != nil {
					t.Fatal(err)
				}
				hashes, err := tlog.StoredHashes(fleetSize, cosigned, fleetStored)
				if err != nil {
					t.Fatal(err)
				}
				fleetStored = append(fleetStored, hashes...)
				fh.Checkpoints = append(fh.Checkpoints, FleetHostCheckpoint{Cosigned: string(cosigned), FleetIndex: fleetSize})
				placed = append(placed, pending{h, len(fh.Checkpoints) - 1})
				fleetSize++
			}
		}
		b.Hosts = append(b.Hosts, fh)
	}
	root, err := tlog.TreeHash(fleetSize, fleetStored)
	if err != nil {
		t.Fatal(err)
	}
	fcp, err := SignFleetCheckpoint(fleetKey, "hub1", fleetSize, root, time.Unix(1800000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	b.FleetCheckpoint = string(fcp.Note)
	for _, p := range placed {
		c := &b.Hosts[p.host].Checkpoints[p.cp]
		if c.Inclusion, err = tlog.ProveRecord(fleetSize, c.FleetIndex, fleetStored); err != nil {
			t.Fatal(err)
		}
	}
	return testFleet{bundle: b, fleet: fleetKey}
}

func vkeyOf(t *testing.T, s testSigner) string {
	t.Helper()
	return s.vkey
}

// roundTrip writes and reads a bundle, as an auditor gets it.
func roundTrip(t *testing.T, b *FleetBundle) *FleetBundle {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteFleetBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFleetBundle(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFleetBundleVerifies(t *testing.T) {
	f := newTestFleet(t, 2, 10, 4)
	rep := VerifyFleetBundle(roundTrip(t, &f.bundle), FleetOptions{FleetKey: f.fleet.verifier})
	if !rep.OK {
		t.Fatalf("not OK: %+v", rep)
	}
	if len(rep.Hosts) != 2 || rep.FleetSize != 6 || rep.Hosts[1].LastSeq != 10 || rep.Hosts[1].Checkpoints != 3 || rep.Hosts[0].Payloads != 3 {
		t.Fatalf("report %+v", rep)
	}
	// A narrowed export: host 1 from entry 6, with the frontier of 1..5.
	n := roundTrip(t, &f.bundle)
	h := &n.Hosts[1]
	var left CompactRange
	for _, e := range h.Entries[:5] {
		left.Add(e.Leaf)
	}
	h.FirstSeq, h.Left, h.Entries = 6, left.Frontier(), h.Entries[5:]
	if rep := VerifyFleetBundle(n, FleetOptions{FleetKey: f.fleet.verifier}); !rep.OK {
		t.Fatalf("narrowed: %+v", rep)
	}
	pinned := &ExternalCheckpoint{Name: "bucket", Note: []byte(f.bundle.FleetCheckpoint)}
	if rep := VerifyFleetBundle(roundTrip(t, &f.bundle), FleetOptions{FleetKey: f.fleet.verifier, Pinned: pinned}); !rep.OK {
		t.Fatalf("pinned: %+v", rep)
	}
}

func TestFleetBundleRefused(t *testing.T) {
	f := newTestFleet(t, 2, 10, 4)
	other := testKey(t)
	otherFleet := newTestFleet(t, 1, 3, 4)
	for _, c := range []struct {
		name   string
		change func(b *FleetBundle)
		opts   FleetOptions
		host   string
		seq    int64
		want   string
	}{
		{name: "a tampered entry body", change: func(b *FleetBundle) {
			e := &b.Hosts[1].Entries[6]
			e.Body = bytes.Replace(e.Body, []byte(`"n":7`), []byte(`"n":8`), 1)
		}, host: "h1", seq: 7, want: "body was changed"},
		{name: "a tampered body and leaf", change: func(b *FleetBundle) {
			e := &b.Hosts[1].Entries[6]
			e.Body = bytes.Replace(e.Body, []byte(`"n":7`), []byte(`"n":8`), 1)
			e.Leaf = LeafHash(e.Body)
		}, host: "h1", seq: 5, want: "entries 5..8"},
		{name: "a tampered payload", change: func(b *FleetBundle) {
			b.Hosts[0].Entries[5].Payload[0] ^= 1
		}, host: "h0", seq: 6, want: "does not match the commitment"},
		{name: "a missing cosignature", change: func(b *FleetBundle) {
			c := &b.Hosts[1].Checkpoints[1]
			c.Cosigned = c.Cosigned[:strings.LastIndex(c.Cosigned[:len(c.Cosigned)-1], "\n")+1]
		}, host: "h1", seq: 5, want: "no cosignature by the hub"},
		{name: "a leaf claimed twice", change: func(b *FleetBundle) {
			b.Hosts[1].Checkpoints[0].FleetIndex = b.Hosts[0].Checkpoints[0].FleetIndex
			b.Hosts[1].Checkpoints[0].Inclusion = b.Hosts[0].Checkpoints[0].Inclusion
		}, host: "h1", seq: 1, want: "another's"},
		{name: "a checkpoint not in the fleet log", change: func(b *FleetBundle) {
			b.Hosts[0].Checkpoints[2].FleetIndex = b.Hosts[1].Checkpoints[0].FleetIndex
			b.Hosts[0].Checkpoints[2].Inclusion = b.Hosts[1].Checkpoints[0].Inclusion
		}, host: "h0", seq: 9, want: "is not leaf 3 of the fleet log"},
		{name: "a wrong inclusion proof", change: func(b *FleetBundle) {
			b.Hosts[0].Checkpoints[1].Inclusion[0][0] ^= 1
		}, host: "h0", seq: 5, want: "is not leaf 1 of the fleet log"},
		{name: "an entry missing", change: func(b *FleetBundle) {
			b.Hosts[0].Entries = b.Hosts[0].Entries[:9]
		}, host: "h0", seq: 1, want: "holds 9 entries"},
		{name: "a fleet checkpoint from another key", change: func(b *FleetBundle) {
			b.FleetCheckpoint = otherFleet.bundle.FleetCheckpoint
			b.FleetKey = otherFleet.bundle.FleetKey
		}, want: "not the key you trust"},
		{name: "a fleet checkpoint signed by another key", change: func(b *FleetBundle) {
			b.FleetCheckpoint = otherFleet.bundle.FleetCheckpoint
		}, want: "fleet checkpoint: checkpoint is not signed by"},
		{name: "another fleet key trusted", change: func(*FleetBundle) {}, opts: FleetOptions{FleetKey: other.verifier}, want: "not the key you trust"},
		{name: "another hub key trusted", change: func(*FleetBundle) {}, opts: FleetOptions{HubKey: testHubKey(t, "hub.example").verifier}, want: "hub key"},
		{name: "another pinned checkpoint", change: func(*FleetBundle) {}, opts: FleetOptions{Pinned: &ExternalCheckpoint{Name: "bucket", Note: mustFleetCP(t, f.fleet, 99)}}, want: "is not your fleet checkpoint bucket"},
	} {
		b := roundTrip(t, &f.bundle)
		c.change(b)
		if c.opts.FleetKey == nil {
			c.opts.FleetKey = f.fleet.verifier
		}
		rep := VerifyFleetBundle(b, c.opts)
		if rep.OK || !strings.Contains(rep.Reason, c.want) || rep.HostID != c.host || rep.Seq != c.seq {
			t.Errorf("%s: got ok=%v host %q seq %d: %s; want host %q seq %d and %q", c.name, rep.OK, rep.HostID, rep.Seq, rep.Reason, c.host, c.seq, c.want)
		}
	}
}

func mustFleetCP(t *testing.T, s testSigner, size int64) []byte {
	t.Helper()
	cp, err := SignFleetCheckpoint(s, "hub1", size, tlog.RecordHash(nil), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	return cp.Note
}

var updateFleetGolden = flag.Bool("update-fleet-golden", false, "rewrite testdata/fleet.bundle.gz and its keys")

// The fleet bundle in testdata is what cmd/interlock-verify and interlock
// journal verify are tested on; it must go on verifying for as long as
// fleet bundle version 1 is read. Rewrite it (only on purpose) with
// go test -run TestFleetGolden -update-fleet-golden.
func TestFleetGolden(t *testing.T) {
	bundle := filepath.Join("testdata", "fleet.bundle.gz")
	fleetPub, hubPub := filepath.Join("testdata", "fleet.pub"), filepath.Join("testdata", "hub.pub")
	if *updateFleetGolden {
		f := newTestFleet(t, 2, 10, 4)
		var buf bytes.Buffer
		if err := WriteFleetBundle(&buf, &f.bundle); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{bundle: buf.Bytes(), fleetPub: []byte(f.bundle.FleetKey + "\n"), hubPub: []byte(f.bundle.HubKey + "\n")} {
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fleetKey, _, err := LoadVerifier(fleetPub)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := os.ReadFile(hubPub)
	if err != nil {
		t.Fatal(err)
	}
	hubKey, err := NewCosignatureVerifier(string(hb))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFleetBundleFile(bundle, FleetOptions{FleetKey: fleetKey, HubKey: hubKey})
	if err != nil || !rep.OK || len(rep.Hosts) != 2 || rep.FleetSize != 6 {
		t.Fatalf("%+v, %v", rep, err)
	}
}

// TestFleetBundleWriterIsTheEncoding: the bundle written a host and an
// entry at a time is the JSON encoding of the whole bundle, byte for
// byte (a host with no entries, a narrowed host with a frontier, and no
// hosts at all included), and a writer cut short leaves a bundle that
// does not parse rather than a smaller one that does.
func TestFleetBundleWriterIsTheEncoding(t *testing.T) {
	f := newTestFleet(t, 3, 10, 4)
	b := f.bundle
	b.Hosts[1].FirstSeq, b.Hosts[1].Left = 6, []tlog.Hash{{1}, {2}}
	b.Hosts[1].Entries = b.Hosts[1].Entries[5:]
	b.Hosts[2].Entries = nil
	for _, c := range []struct {
		name string
		b    FleetBundle
	}{{"hosts", b}, {"no hosts", FleetBundle{HubID: "hub1"}}} {
		var buf bytes.Buffer
		if err := WriteFleetBundle(&buf, &c.b); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(&c.b)
		if err != nil {
			t.Fatal(err)
		}
		// The writer writes an empty list where the encoding of a nil
		// slice is null; both read back the same.
		want = bytes.ReplaceAll(want, []byte(`"entries":null`), []byte(`"entries":[]`))
		want = bytes.ReplaceAll(want, []byte(`"hosts":null`), []byte(`"hosts":[]`))
		if !bytes.Equal(got, append(want, '\n')) {
			t.Errorf("%s: written\n%.400s\nwant\n%.400s", c.name, got, want)
		}
	}

	var buf bytes.Buffer
	fw, err := NewFleetBundleWriter(&buf, &b)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Host(&b.Hosts[0]); err != nil {
		t.Fatal(err)
	}
	if err := fw.Entry(&b.Hosts[0].Entries[0]); err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFleetBundle(bytes.NewReader(buf.Bytes())); err == nil {
		t.Error("a bundle cut short after its first entry parses")
	}
}
