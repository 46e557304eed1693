package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
)

// TestFleetBundleOfSize: ?fleet_size=N serves the bundle against the
// fleet checkpoint of that size, not the newest, so that an auditor who
// pinned it from the bucket verifies although the hub signed another
// since; a size the hub never signed is 404.
func TestFleetBundleOfSize(t *testing.T) {
	hub := newHub(t)
	a := newHost(t, t.TempDir())
	a.append(t, events(9, "a")...)
	if status, ref := a.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	ctx := context.Background()
	notes := map[int64][]byte{}
	for _, r := range [][2]int64{{1, 4}, {5, 10}} {
		if status, _, ref := a.ship(t, hub, a.batch(t, r[0], r[1])); status != http.StatusOK {
			t.Fatalf("batch %d..%d: %d %+v", r[0], r[1], status, ref)
		}
		size, err := hub.srv.SignFleet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fc, err := hub.st.FleetCheckpointOfSize(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		notes[size] = fc.Note
	}
	if len(notes) != 2 || notes[1] == nil || notes[2] == nil {
		t.Fatalf("fleet checkpoints of sizes %v, want 1 and 2", notes)
	}
	fv, err := note.NewVerifier(hub.keys.FleetKey)
	if err != nil {
		t.Fatal(err)
	}
	op := hub.client(operatorCert(t, hub))
	url := hub.url + hubapi.PathFleetBundle
	for _, c := range []struct {
		query   string
		size    int64
		entries int
	}{{"", 2, 10}, {"?fleet_size=1", 1, 4}, {"?fleet_size=2", 2, 10}, {"?fleet_size=1&host=" + a.join.HostID + "&from=3", 1, 2}} {
		status, body, _ := getBundle(t, op, url+c.query)
		if status != http.StatusOK {
			t.Fatalf("%q: %d %s", c.query, status, body)
		}
		fb, err := evidence.ReadFleetBundle(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		if fb.FleetCheckpoint != string(notes[c.size]) || len(fb.Hosts) != 1 || len(fb.Hosts[0].Entries) != c.entries {
			t.Errorf("%q: the bundle is not against fleet checkpoint %d with %d entries: %d hosts", c.query, c.size, c.entries, len(fb.Hosts))
		}
		pin := &evidence.ExternalCheckpoint{Name: fmt.Sprint("fleet/checkpoints/", c.size), Note: notes[c.size]}
		if rep := evidence.VerifyFleetBundle(fb, evidence.FleetOptions{FleetKey: fv, Pinned: pin}); !rep.OK {
			t.Errorf("%q: does not verify against the pinned checkpoint %d: %+v", c.query, c.size, rep)
		}
	}
	for query, want := range map[string]int{
		"fleet_size=3":  http.StatusNotFound, // never signed
		"fleet_size=0":  http.StatusBadRequest,
		"fleet_size=-1": http.StatusBadRequest,
		"fleet_size=x":  http.StatusBadRequest,
		"fleet_size=1&host=" + a.join.HostID + "&from=5": http.StatusBadRequest, // past what checkpoint 1 covers
	} {
		if status, body, _ := getBundle(t, op, url+"?"+query); status != want {
			t.Errorf("?%s: %d %s, want %d", query, status, body, want)
		}
	}
}
