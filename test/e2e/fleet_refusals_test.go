package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/ship"
)

// testFleetRefusals drives the hub's API as host b, with b's enrolment
// (its client certificate) and b's journal key, the way a host that
// replays or forks its log would: an old range again, a checkpoint of a
// sibling tree over entries that do chain (two copies of b's journal that
// went on differently, both signed by b's key), and a checkpoint signed by
// another host's key. Each is refused with its code, the hub keeps each
// as evidence, and what it holds of b does not move.
func testFleetRefusals(t *testing.T, hub *fleetHub, a, b *fleetHost) {
	// b stops, so that the hub's head of it holds still.
	b.d.stop(t, syscall.SIGTERM)
	held := b.hubSize(hub)
	st, err := ship.LoadState(b.shipDir)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ship.NewClient(hub.url, st)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	send := func(what string, batch *hubapi.Batch, status int, code string) {
		t.Helper()
		_, err := client.Send(ctx, batch)
		var re *ship.RefusalError
		if !errors.As(err, &re) || re.Status != status || re.Code != code {
			t.Errorf("%s: %v, want %d %s", what, err, status, code)
			return
		}
		if code == hubapi.CodeNotContiguous && (re.Head == nil || re.Head.Size != held) {
			t.Errorf("%s: the refusal's head %+v, want size %d", what, re.Head, held)
		}
	}

	// A replay of b's first batch, with the checkpoint the hub cosigned.
	var first int64
	var firstNote string
	fmt.Sscanf(hub.sql("SELECT size || ' ' || encode(note, 'hex') FROM checkpoints WHERE host_id = '"+b.hostID+"' ORDER BY size LIMIT 1"), "%d %s", &first, &firstNote)
	cp1, _ := hex.DecodeString(firstNote)
	send("a replay of entries 1.."+fmt.Sprint(first), &hubapi.Batch{From: 1, Entries: journalEntries(t, b.journal, 1, first), Checkpoint: cp1},
		http.StatusConflict, hubapi.CodeNotContiguous)

	// Two copies of b's journal, each going on with an entry of its own.
	// The entries of one chain to what the hub holds; the checkpoint of
	// the other states a tree they do not make.
	_, cpC := forkJournal(t, b, "c")
	forkD, cpD := forkJournal(t, b, "d")
	if cpC.Size != cpD.Size || bytes.Equal(cpC.Root[:], cpD.Root[:]) {
		t.Fatalf("the forks: sizes %d and %d, roots %x and %x", cpC.Size, cpD.Size, cpC.Root, cpD.Root)
	}
	entriesD := journalEntries(t, forkD, held+1, cpD.Size)
	send("entries of one fork with the checkpoint of the other", &hubapi.Batch{From: held + 1, Entries: entriesD, Checkpoint: cpC.Note},
		http.StatusUnprocessableEntity, hubapi.CodeRootMismatch)

	// A checkpoint signed by another host's journal key.
	var otherNote string
	fmt.Sscanf(hub.sql("SELECT encode(note, 'hex') FROM checkpoints WHERE host_id = '"+a.hostID+"' ORDER BY size DESC LIMIT 1"), "%s", &otherNote)
	other, _ := hex.DecodeString(otherNote)
	send("entries with another host's checkpoint", &hubapi.Batch{From: held + 1, Entries: entriesD, Checkpoint: other},
		http.StatusUnprocessableEntity, hubapi.CodeBadCheckpoint)

	if got := b.hubSize(hub); got != held {
		t.Errorf("the hub holds %d entries of b after the refusals, %d before", got, held)
	}
	// The evidence: each refused batch's claimed range and checkpoint, and
	// for the fork the bodies it presented.
	rows := hub.sql("SELECT code || ' ' || batch_from || ' ' || batch_entries || ' ' || coalesce(encode(checkpoint, 'hex'), '-') || ' ' || (bodies IS NOT NULL) FROM refusals WHERE host_id = '" + b.hostID + "' ORDER BY id")
	for _, want := range []string{
		fmt.Sprintf("%s 1 %d %x", hubapi.CodeNotContiguous, first, cp1),
		fmt.Sprintf("%s %d %d %x true", hubapi.CodeRootMismatch, held+1, len(entriesD), cpC.Note),
		fmt.Sprintf("%s %d %d %x", hubapi.CodeBadCheckpoint, held+1, len(entriesD), other),
	} {
		if !strings.Contains(rows, want) {
			t.Errorf("no refusal kept as %.80s…; the hub kept:\n%.2000s", want, rows)
		}
	}
}

// journalEntries reads entries from..to of a journal as the wire carries
// them.
func journalEntries(t *testing.T, path string, from, to int64) []hubapi.Entry {
	t.Helper()
	var out []hubapi.Entry
	err := journal.Entries(context.Background(), path, uint64(from), func(e journal.Entry) error {
		if int64(e.Seq) <= to {
			out = append(out, hubapi.Entry{Seq: int64(e.Seq), Body: e.Body, Salt: e.Salt, Payload: e.Payload})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(out)) != to-from+1 {
		t.Fatalf("%s: %d entries from %d to %d", path, len(out), from, to)
	}
	return out
}

// forkJournal copies the stopped host's journal (the database, its WAL,
// its checkpoint file) and key, appends one entry of its own to the copy
// and has the copy sign a checkpoint of it: the same journal id and key,
// another history from there on.
func forkJournal(t *testing.T, fh *fleetHost, branch string) (string, evidence.Checkpoint) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fork-"+branch)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(fh.journal + "*")
	keys := []string{filepath.Join(fh.dir, "state", journal.KeyFile), filepath.Join(fh.dir, "state", journal.PublicKeyFile)}
	for _, f := range append(matches, keys...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, filepath.Base(fh.journal))
	ctx := context.Background()
	j, err := journal.Open(ctx, journal.Options{Path: path, StateDir: dir})
	if err != nil {
		t.Fatalf("open a copy of %s's journal: %v", fh.name, err)
	}
	defer j.Close()
	seq, err := j.Append(ctx, model.Record{Kind: "fork.test", Data: map[string]string{"branch": branch}}, model.Synced)
	if err != nil {
		t.Fatal(err)
	}
	// A Synced append is answered before the journal's writer takes in
	// the fsync, so the first checkpoint asked for may stop short of it.
	var cp evidence.Checkpoint
	testkit.WaitFor(t, fleetWait, 10*time.Millisecond, func() bool {
		if cp, err = j.CheckpointAt(ctx, int64(seq)); err != nil {
			t.Fatalf("checkpoint of the fork at %d: %v", seq, err)
		}
		return cp.Size == int64(seq)
	})
	return path, cp
}

// testFleetSessions: `interlock sessions list --hub` with an operator's
// certificate from `interlock hub operator` finds every session.open each
// host journaled, by host and by target, and the table names the hosts.
func testFleetSessions(t *testing.T, hub *fleetHub, hosts []*fleetHost) {
	op := filepath.Join(t.TempDir(), "operator")
	if _, stderr, code := hub.interlock("operator", "--name", "auditor", "--out", op); code != 0 {
		t.Fatalf("hub operator: exit %d: %s", code, stderr)
	}
	list := func(args ...string) []hubapi.Session {
		t.Helper()
		out, stderr, code := runCmd(t, exec.Command(interlockBin, append([]string{"sessions", "list", "--hub", hub.url, "--operator", op, "--json", "--limit", "1000"}, args...)...))
		var found []hubapi.Session
		if code != 0 || json.Unmarshal([]byte(out), &found) != nil {
			t.Fatalf("sessions list --hub %v: exit %d %.300s %s", args, code, out, stderr)
		}
		return found
	}
	for _, fh := range hosts {
		want := map[string]bool{}
		for _, en := range fh.entries() {
			if en.Kind == model.KindSessionOpen {
				want[en.Session] = true
			}
		}
		found := list("--host", fh.hostID, "--target", "db")
		for _, s := range found {
			if s.HostID != fh.hostID || s.HostName != fh.name || !want[s.Session] {
				t.Errorf("%s: the hub found session %s of host %s (%s)", fh.name, s.Session, s.HostID, s.HostName)
			}
		}
		if len(want) == 0 || len(found) != len(want) {
			t.Errorf("%s: the hub found %d sessions, the journal has %d", fh.name, len(found), len(want))
		}
	}
	if found := list("--target", "no-such-target"); len(found) != 0 {
		t.Errorf("sessions of a target no host has: %d", len(found))
	}
	out, stderr, code := runCmd(t, exec.Command(interlockBin, "sessions", "list", "--hub", hub.url, "--operator", op, "--limit", "5"))
	if code != 0 || strings.Count(out, "\n") != 6 {
		t.Errorf("sessions list --hub: exit %d\n%s%s", code, out, stderr)
	}
	// Without an operator's certificate there is no search.
	if _, stderr, code := runCmd(t, exec.Command(interlockBin, "sessions", "list", "--hub", hub.url)); code != 64 || !strings.Contains(stderr, "--operator") {
		t.Errorf("sessions list --hub without --operator: exit %d %s", code, stderr)
	}
}

// testVerifyHub: `interlock journal verify --hub` downloads from the hub
// the very bundle `hub export` wrote (bundle), and it verifies with every
// pin; without pins it verifies too but says it trusted what the hub
// served; one host from a seq verifies on its own.
func testVerifyHub(t *testing.T, hub *fleetHub, op, bundle, fleetKey, hubKey, pinned string, hosts []*fleetHost) {
	type report struct {
		OK              bool     `json:"ok"`
		TrustOnFirstUse bool     `json:"trust_on_first_use"`
		Unpinned        []string `json:"unpinned"`
		BundleSHA256    string   `json:"bundle_sha256"`
		Hosts           []struct {
			HostID   string `json:"host_id"`
			FirstSeq int64  `json:"first_seq"`
			LastSeq  int64  `json:"last_seq"`
		} `json:"hosts"`
	}
	verify := func(args ...string) (report, string, string) {
		t.Helper()
		out, stderr, code := runCmd(t, exec.Command(interlockBin, append([]string{"journal", "verify", "--hub", hub.url, "--operator", op}, args...)...))
		var r report
		if code != 0 || (slices.Contains(args, "--json") && json.Unmarshal([]byte(out), &r) != nil) {
			t.Fatalf("journal verify --hub %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return r, out, stderr
	}
	exported, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(exported)
	r, _, stderr := verify("--json", "--fleet-key", fleetKey, "--hub-key", hubKey, "--fleet-checkpoint", pinned)
	if !r.OK || r.TrustOnFirstUse || len(r.Unpinned) != 0 || len(r.Hosts) != len(hosts) || stderr != "" {
		t.Errorf("journal verify --hub with every pin: %+v %s", r, stderr)
	}
	if r.BundleSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("the hub served a bundle of SHA-256 %s; hub export wrote %x", r.BundleSHA256, sum)
	}
	_, out, _ := verify()
	for _, want := range []string{": OK, hub ", "trust on first use", "--fleet-key", "--fleet-checkpoint", "fleet/checkpoints/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("journal verify --hub without pins does not say %q:\n%s", want, out)
		}
	}
	fh := hosts[1]
	r, _, _ = verify("--json", "--fleet-key", fleetKey, "--host", fh.hostID, "--from", "3")
	if !r.OK || len(r.Hosts) != 1 || r.Hosts[0].HostID != fh.hostID || r.Hosts[0].FirstSeq != 3 || r.Hosts[0].LastSeq != fh.head() {
		t.Errorf("journal verify --hub --host %s --from 3: %+v", fh.name, r)
	}
	// Without the operator's certificate, the hub is not asked.
	if _, stderr, code := runCmd(t, exec.Command(interlockBin, "journal", "verify", "--hub", hub.url)); code != 64 || !strings.Contains(stderr, "--operator") {
		t.Errorf("journal verify --hub without --operator: exit %d %s", code, stderr)
	}
}
