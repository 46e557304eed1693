package server

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/journal/evidence"
)

// TestExportVerifies: two hosts ship; the fleet bundle exported from the
// hub's store verifies offline against the fleet key. A body changed in
// PostgreSQL, or an entry deleted there, fails the verification of the
// next export, naming the host and the seq.
func TestExportVerifies(t *testing.T) {
	hub := newHub(t)
	a, b := newHost(t, t.TempDir()), newHost(t, t.TempDir())
	a.append(t, events(6, "a")...)
	b.append(t, events(3, "b")...)
	for _, h := range []*testHost{a, b} {
		if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
			t.Fatalf("join: %d %+v", status, ref)
		}
	}
	a.append(t, events(1, "payload")...)
	for _, s := range []struct {
		h        *testHost
		from, to int64
	}{{a, 1, 3}, {b, 1, 4}, {a, 4, 7}} {
		if status, _, ref := s.h.ship(t, hub, s.h.batch(t, s.from, s.to)); status != http.StatusOK {
			t.Fatalf("batch %d..%d: %d %+v", s.from, s.to, status, ref)
		}
	}
	ctx := context.Background()
	if _, err := hub.srv.SignFleet(ctx); err != nil {
		t.Fatal(err)
	}
	// A batch after the fleet checkpoint is left for the next export.
	a.append(t, events(2, "later")...)
	if status, _, ref := a.ship(t, hub, a.batch(t, 8, 9)); status != http.StatusOK {
		t.Fatalf("batch 8..9: %d %+v", status, ref)
	}
	fv, err := note.NewVerifier(hub.keys.FleetKey)
	if err != nil {
		t.Fatal(err)
	}
	verify := func() evidence.FleetReport {
		t.Helper()
		return evidence.VerifyFleetBundle(export(t, hub, ExportOptions{}), evidence.FleetOptions{FleetKey: fv})
	}
	rep := verify()
	if !rep.OK || len(rep.Hosts) != 2 || rep.FleetSize != 3 {
		t.Fatalf("the exported bundle does not verify: %+v", rep)
	}
	for _, hr := range rep.Hosts {
		if want := map[string]int64{a.join.HostID: 7, b.join.HostID: 4}[hr.HostID]; hr.LastSeq != want {
			t.Errorf("host %s verified to %d, want %d", hr.HostID, hr.LastSeq, want)
		}
	}

	db, err := pgx.Connect(ctx, hub.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	tag, err := db.Exec(ctx, `UPDATE entries SET body = convert_to(replace(convert_from(body, 'UTF8'), '"tag":"a"', '"tag":"x"'), 'UTF8')
		WHERE host_id = $1 AND seq = 3`, a.join.HostID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v %v", tag, err)
	}
	if rep := verify(); rep.OK || rep.HostID != a.join.HostID || rep.Seq != 3 {
		t.Errorf("a body changed in PostgreSQL: %+v, want a failure at host %s seq 3", rep, a.join.HostID)
	}
	if _, err := db.Exec(ctx, `UPDATE entries SET body = convert_to(replace(convert_from(body, 'UTF8'), '"tag":"x"', '"tag":"a"'), 'UTF8')
		WHERE host_id = $1 AND seq = 3`, a.join.HostID); err != nil {
		t.Fatal(err)
	}
	if rep := verify(); !rep.OK {
		t.Fatalf("the body put back: %+v", rep)
	}
	if _, err := db.Exec(ctx, `DELETE FROM entries WHERE host_id = $1 AND seq = 2`, b.join.HostID); err != nil {
		t.Fatal(err)
	}
	if rep := verify(); rep.OK || rep.HostID != b.join.HostID || rep.Seq == 0 {
		t.Errorf("an entry deleted in PostgreSQL: %+v, want a failure at host %s naming a seq", rep, b.join.HostID)
	} else {
		t.Logf("deleted entry: %s (seq %d)", rep.Reason, rep.Seq)
	}
}

// export writes the fleet bundle of opts as `interlock hub export` does,
// and reads it back as a verifier does.
func export(t *testing.T, hub *testHub, opts ExportOptions) *evidence.FleetBundle {
	t.Helper()
	ctx := context.Background()
	plan, err := PlanExport(ctx, hub.st, hub.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := plan.WriteTo(ctx, &buf, nil); err != nil {
		t.Fatal(err)
	}
	b, err := evidence.ReadFleetBundle(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
