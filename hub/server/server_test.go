package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

func verifyCosigned(t *testing.T, h *testHost, cosigned []byte, size int64) {
	t.Helper()
	hostKey, err := note.NewVerifier(h.signer.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	hubKey, err := evidence.NewCosignatureVerifier(h.join.HubKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, at, err := evidence.VerifyCosigned(cosigned, hostKey, hubKey)
	if err != nil {
		t.Fatalf("the hub's cosigned checkpoint does not verify: %v\n%s", err, cosigned)
	}
	if cp.Size != size || time.Since(at) > time.Minute {
		t.Errorf("cosigned checkpoint of size %d at %v, want size %d now", cp.Size, at, size)
	}
}

// TestShipCosignAndFleet: a host enrols with a token, ships its journal in
// two batches; each is cosigned (verifying with the key from enrolment),
// the hub's stored tree has the host's roots, and the fleet checkpoint
// covers both cosigned checkpoints, each provably included.
func TestShipCosignAndFleet(t *testing.T) {
	hub := newHub(t)
	h := newHost(t, t.TempDir())
	h.append(t, events(5, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	if h.join.CA != string(hub.keys.CAPEM) || h.join.FleetKey != hub.keys.FleetKey || !strings.HasPrefix(h.join.HostID, "h") {
		t.Errorf("join response %+v", h.join)
	}

	resp, err := h.http.Get(hub.url + hubapi.PathHead)
	if err != nil {
		t.Fatal(err)
	}
	var head hubapi.Head
	json.NewDecoder(resp.Body).Decode(&head)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || head.Size != 0 || head.JournalID != h.id || head.HostID != h.join.HostID {
		t.Fatalf("head before shipping: %d %+v", resp.StatusCode, head)
	}

	status, ok, ref := h.ship(t, hub, h.batch(t, 1, 6))
	if status != http.StatusOK {
		t.Fatalf("batch 1..6: %d %+v", status, ref)
	}
	verifyCosigned(t, h, ok.Cosigned, 6)
	h.append(t, model.Record{Kind: model.KindSessionOpen, Session: "s1", Data: model.SessionOpen{
		Target:   model.Target{Name: "prod-db", Protocol: model.ProtoPostgres, Address: "db:5432"},
		Identity: model.Identity{Proc: &model.ProcFacts{User: "alice"}},
	}, Payload: []byte("rows")})
	h.append(t, events(2, "b")...)
	h.append(t, model.Record{Kind: "test.empty", Data: map[string]any{}, Payload: []byte{}})
	altered := h.batch(t, 7, 10)
	altered.Entries[0].Payload = []byte("rowz")
	if status, _, ref := h.ship(t, hub, altered); status != http.StatusUnprocessableEntity || ref.Code != hubapi.CodeBadEntry {
		t.Errorf("an altered payload: %d %+v", status, ref)
	}
	status, ok, ref = h.ship(t, hub, h.batch(t, 7, 10))
	if status != http.StatusOK {
		t.Fatalf("batch 7..10: %d %+v", status, ref)
	}
	verifyCosigned(t, h, ok.Cosigned, 10)
	if ok.Head.Size != 10 || ok.Head.CosignedSize != 10 {
		t.Errorf("head after two batches: %+v", ok.Head)
	}

	ctx := context.Background()
	stored, err := hub.st.Entries(ctx, h.join.HostID, 1, 10)
	if err != nil || len(stored) != 10 {
		t.Fatalf("stored entries: %d, %v", len(stored), err)
	}
	want := h.entries(t, 1, 10)
	for i, e := range stored {
		if !bytes.Equal(e.Body, want[i].Body) || !bytes.Equal(e.Payload, want[i].Payload) || !bytes.Equal(e.Salt, want[i].Salt) {
			t.Errorf("entry %d stored differently", e.Seq)
		}
	}
	if e := stored[9]; len(e.Salt) != 32 || e.Payload == nil || len(e.Payload) != 0 {
		t.Errorf("the empty payload of entry 10 stored as salt %x payload %q (nil: %v)", e.Salt, e.Payload, e.Payload == nil)
	}
	root, err := tlog.TreeHash(10, hub.st.TreeHashes(ctx, h.join.HostID))
	if err != nil || !bytes.Equal(root[:], ok.Head.Root) {
		t.Errorf("root recomputed from the stored tree hashes = %v, %v; head root %x", root, err, ok.Head.Root)
	}

	size, err := hub.srv.SignFleet(ctx)
	if err != nil || size != 2 {
		t.Fatalf("SignFleet = %d, %v; want the 2 cosigned checkpoints", size, err)
	}
	if hub.pub.published.Load() != 2 {
		t.Errorf("published fleet checkpoint %d, want 2", hub.pub.published.Load())
	}
	resp, err = hub.client(nil).Get(hub.url + hubapi.PathFleet)
	if err != nil {
		t.Fatal(err)
	}
	fleetNote, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fv, err := note.NewVerifier(h.join.FleetKey)
	if err != nil {
		t.Fatal(err)
	}
	fcp, err := evidence.ParseFleetCheckpoint(fleetNote, fv)
	if err != nil {
		t.Fatalf("fleet checkpoint: %v\n%s", err, fleetNote)
	}
	if fcp.Size != 2 || fcp.Origin != evidence.FleetOrigin(hub.keys.HubID) {
		t.Errorf("fleet checkpoint %+v", fcp)
	}
	cps, err := hub.st.Checkpoints(ctx, h.join.HostID)
	if err != nil || len(cps) != 2 {
		t.Fatalf("checkpoints: %v %v", cps, err)
	}
	for _, c := range cps {
		p, err := tlog.ProveRecord(fcp.Size, c.FleetIndex, hub.st.FleetHashes(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, fcp.Size, fcp.Root, c.FleetIndex, evidence.FleetLeaf(c.Cosigned)); err != nil {
			t.Errorf("cosigned checkpoint %d is not in the fleet checkpoint: %v", c.Size, err)
		}
	}
	// Nothing new: no new fleet checkpoint.
	if size, err := hub.srv.SignFleet(ctx); err != nil || size != 2 {
		t.Errorf("SignFleet again = %d, %v", size, err)
	}
}

// TestRefusals: a replayed old range, a checkpoint by another key, an
// altered body, a body that does not parse and a forked journal are
// each refused with their code, the hub's head unchanged, and each is
// kept as evidence.
func TestRefusals(t *testing.T) {
	hub := newHub(t)
	dir := t.TempDir()
	h := newHost(t, dir)
	h.append(t, events(7, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	if status, _, ref := h.ship(t, hub, h.batch(t, 1, 4)); status != http.StatusOK {
		t.Fatalf("batch 1..4: %d %+v", status, ref)
	}

	expect := func(name string, b hubapi.Batch, status int, code string) {
		t.Helper()
		got, _, ref := h.ship(t, hub, b)
		if got != status || ref.Code != code {
			t.Errorf("%s: %d %+v, want %d %s", name, got, ref, status, code)
		}
		if ref.Head == nil || ref.Head.Size != 4 {
			t.Errorf("%s: head in the refusal %+v, want size 4", name, ref.Head)
		}
	}
	expect("replay of 1..4", h.batch(t, 1, 4), http.StatusConflict, hubapi.CodeNotContiguous)
	expect("replay of 3..5", h.batch(t, 3, 5), http.StatusConflict, hubapi.CodeNotContiguous)
	expect("gap 6..7", h.batch(t, 6, 7), http.StatusConflict, hubapi.CodeNotContiguous)

	other, _, err := note.GenerateKey(rand.Reader, "intruder")
	if err != nil {
		t.Fatal(err)
	}
	intruder, _ := note.NewSigner(other)
	b := h.batch(t, 5, 6)
	var cr evidence.CompactRange
	for _, e := range h.entries(t, 1, 6) {
		cr.Add(evidence.LeafHash(e.Body))
	}
	cp, err := evidence.SignCheckpoint(intruder, evidence.Origin(h.id), 6, cr.Root(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.Checkpoint = cp.Note
	expect("checkpoint by another key", b, http.StatusUnprocessableEntity, hubapi.CodeBadCheckpoint)

	b = h.batch(t, 5, 6)
	b.Checkpoint = h.checkpoint(t, 7)
	expect("checkpoint of another size", b, http.StatusUnprocessableEntity, hubapi.CodeBadCheckpoint)

	b = h.batch(t, 5, 6)
	b.Entries[1].Body = bytes.Replace(b.Entries[1].Body, []byte(`"tag":"a"`), []byte(`"tag":"x"`), 1)
	expect("altered body", b, http.StatusUnprocessableEntity, hubapi.CodeRootMismatch)

	b = h.batch(t, 5, 6)
	b.Entries[0].Body = append([]byte(" "), b.Entries[0].Body...)
	expect("body not canonical", b, http.StatusUnprocessableEntity, hubapi.CodeBadEntry)

	b = h.batch(t, 5, 6)
	b.Entries[0].Seq = 9
	expect("entry out of place", b, http.StatusUnprocessableEntity, hubapi.CodeBadEntry)

	b = h.batch(t, 5, 6)
	b.Entries[1].Salt, b.Entries[1].Payload = make([]byte, 32), []byte("not committed to")
	expect("payload without a commitment", b, http.StatusUnprocessableEntity, hubapi.CodeBadEntry)

	// A fork: a copy of the journal taken at entry 7 (same id, same key)
	// goes on with other entries. The original ships first; the copy's
	// next entries chain to its own history, not to what the hub holds.
	if status, _, ref := h.ship(t, hub, h.batch(t, 5, 7)); status != http.StatusOK {
		t.Fatalf("batch 5..7: %d %+v", status, ref)
	}
	h.j.Close()
	forkDir := t.TempDir()
	for _, f := range []string{"journal.db", "journal.db.checkpoint", "journal.key", "journal.pub"} {
		copyFile(t, filepath.Join(dir, f), filepath.Join(forkDir, f))
	}
	h.j = newHost(t, dir).j
	h.append(t, events(2, "original")...)
	fork := newHost(t, forkDir)
	if fork.id != h.id {
		t.Fatalf("the copy is journal %s, not %s", fork.id, h.id)
	}
	fork.append(t, events(4, "fork")...)
	if status, _, ref := h.ship(t, hub, h.batch(t, 8, 9)); status != http.StatusOK {
		t.Fatalf("batch 8..9: %d %+v", status, ref)
	}
	fork.http, fork.join = h.http, h.join
	got, _, ref := fork.ship(t, hub, fork.batch(t, 10, 11))
	if got != http.StatusUnprocessableEntity || ref.Code != hubapi.CodeRootMismatch || ref.Head.Size != 9 {
		t.Errorf("forked tree: %d %+v, want root_mismatch at head 9", got, ref)
	}

	refusals, err := hub.st.Refusals(context.Background(), h.join.HostID)
	if err != nil {
		t.Fatal(err)
	}
	codes := []string{}
	for _, r := range refusals {
		codes = append(codes, r.Code)
		if len(r.Checkpoint) == 0 {
			t.Errorf("refusal %d (%s) keeps no checkpoint", r.ID, r.Code)
		}
	}
	wantCodes := "not_contiguous not_contiguous not_contiguous bad_checkpoint bad_checkpoint root_mismatch bad_entry bad_entry bad_entry root_mismatch"
	if strings.Join(codes, " ") != wantCodes {
		t.Errorf("refusals kept: %v, want %s", codes, wantCodes)
	}
	last := refusals[len(refusals)-1]
	if len(last.Bodies) != 2 || !bytes.Contains(last.Bodies[0], []byte(`"tag":"fork"`)) {
		t.Errorf("the fork's refusal keeps bodies %q", last.Bodies)
	}
	if bad := refusals[6]; bad.BadSeq != 5 || !bytes.HasPrefix(bad.BadBody, []byte(" ")) {
		t.Errorf("bad entry refusal keeps seq %d body %q", bad.BadSeq, bad.BadBody)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAuthentication: without a client certificate, with one of another
// CA, with an operator's, or with a host's certificate after its
// journal's enrolment was refused, nothing is served; a token works once
// and not after it expired.
func TestAuthentication(t *testing.T) {
	hub := newHub(t)
	h := newHost(t, t.TempDir())
	h.append(t, events(2, "a")...)

	resp, err := hub.client(nil).Get(hub.url + hubapi.PathHead)
	if err != nil {
		t.Fatal(err)
	}
	var ref hubapi.Refusal
	json.NewDecoder(resp.Body).Decode(&ref)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || ref.Code != hubapi.CodeUnauthorized {
		t.Errorf("head without a client certificate: %d %+v", resp.StatusCode, ref)
	}
	if status, _ := post(t, hub.client(nil), hub.url+hubapi.PathBatches, h.batch(t, 1, 2)); status != http.StatusUnauthorized {
		t.Errorf("batch without a client certificate: %d", status)
	}

	if status, ref := h.enrol(t, hub, "iljoin_made-up"); status != http.StatusUnauthorized || ref.Code != hubapi.CodeUnauthorized {
		t.Errorf("join with an unknown token: %d %+v", status, ref)
	}
	if status, ref := h.enrol(t, hub, hub.token(t, -time.Minute)); status != http.StatusUnauthorized {
		t.Errorf("join with an expired token: %d %+v", status, ref)
	}
	tok := hub.token(t, time.Hour)
	if status, ref := h.enrol(t, hub, tok); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	h2 := newHost(t, t.TempDir())
	if status, ref := h2.enrol(t, hub, tok); status != http.StatusUnauthorized {
		t.Errorf("second join with one token: %d %+v", status, ref)
	}
	// The same journal cannot enrol twice, and the token is not burned.
	tok2 := hub.token(t, time.Hour)
	if status, _ := h.enrol(t, hub, tok2); status != http.StatusConflict {
		t.Errorf("second enrolment of one journal: %d", status)
	}
	if status, ref := h2.enrol(t, hub, tok2); status != http.StatusOK {
		t.Errorf("the token refused for a duplicate journal still works: %d %+v", status, ref)
	}

	// A certificate from another hub's CA: the handshake fails.
	otherKeys, err := LoadOrCreateKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherKeys.ServerCert([]string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	// Sent whatever CAs the hub asks for: a client picks only certificates
	// of those on its own.
	c := hub.client(nil)
	c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreign, nil
	}
	if resp, err := c.Get(hub.url + hubapi.PathHead); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate of another CA got %d", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a certificate of another CA: %v", err)
	}

	// The host's certificate ships; the sessions search wants an
	// operator's.
	if status, _, ref := h.ship(t, hub, h.batch(t, 1, 3)); status != http.StatusOK {
		t.Fatalf("batch: %d %+v", status, ref)
	}
	resp, err = h.http.Get(hub.url + hubapi.PathSessions)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sessions search with a host certificate: %d", resp.StatusCode)
	}
}

// TestConcurrentBatches: the same batch sent many times at once is
// accepted once; the others find it held (not_contiguous).
func TestConcurrentBatches(t *testing.T) {
	hub := newHub(t)
	h := newHost(t, t.TempDir())
	h.append(t, events(30, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	b := h.batch(t, 1, 31)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(b)
			resp, err := h.http.Post(hub.url+hubapi.PathBatches, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	accepted := 0
	for _, s := range statuses {
		switch s {
		case http.StatusOK:
			accepted++
		case http.StatusConflict:
		default:
			t.Errorf("status %d", s)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %v accepted, want exactly 1", accepted, statuses)
	}
	leaves, err := hub.st.FleetLeaves(context.Background(), 0, 100)
	if err != nil || len(leaves) != 1 {
		t.Errorf("fleet leaves %d, %v; want 1", len(leaves), err)
	}
}

// TestBounds: batches beyond the hub's limits are refused before they are
// looked at.
func TestBounds(t *testing.T) {
	hub := newHub(t)
	h := newHost(t, t.TempDir())
	h.append(t, events(600, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	if status, _, ref := h.ship(t, hub, h.batch(t, 1, 501)); status != http.StatusRequestEntityTooLarge || ref.Code != hubapi.CodeTooLarge {
		t.Errorf("501 entries: %d %+v", status, ref)
	}
	big := h.batch(t, 1, 2)
	big.Entries[1].Payload = make([]byte, 25<<20)
	if status, _, ref := h.ship(t, hub, big); status != http.StatusRequestEntityTooLarge || ref.Code != hubapi.CodeTooLarge {
		t.Errorf("a 25 MiB batch: %d %+v", status, ref)
	}
	if status, _ := post(t, h.http, hub.url+hubapi.PathBatches, map[string]any{"from": 1}); status != http.StatusBadRequest {
		t.Errorf("an empty batch: %d", status)
	}
}
