package server

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
)

// TestPublishBacklog: fleet checkpoints signed while the bucket is down
// are published, in order, once it is back.
func TestPublishBacklog(t *testing.T) {
	hub := newHub(t)
	h := newHost(t, t.TempDir())
	h.append(t, events(4, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	hub.pub.fail.Store(true)
	ctx := context.Background()
	for _, r := range [][2]int64{{1, 2}, {3, 5}} {
		if status, _, ref := h.ship(t, hub, h.batch(t, r[0], r[1])); status != http.StatusOK {
			t.Fatalf("batch %v: %d %+v", r, status, ref)
		}
		if _, err := hub.srv.SignFleet(ctx); err == nil {
			t.Errorf("SignFleet with the bucket down succeeded")
		}
	}
	if pending, _ := hub.st.Unpublished(ctx); len(pending) != 2 {
		t.Errorf("%d fleet checkpoints waiting, want 2", len(pending))
	}
	hub.pub.fail.Store(false)
	if size, err := hub.srv.SignFleet(ctx); err != nil || size != 2 || hub.pub.published.Load() != 2 {
		t.Errorf("SignFleet after the bucket came back = %d, %v; published %d", size, err, hub.pub.published.Load())
	}
	if pending, _ := hub.st.Unpublished(ctx); len(pending) != 0 {
		t.Errorf("%d fleet checkpoints still waiting", len(pending))
	}
}

// TestRestart: a hub restarted on its state directory and database keeps
// its keys and what it holds: the host resumes after the head, its new
// checkpoints are cosigned with the key it enrolled with, and the fleet
// loop signs a fleet checkpoint of both hubs' leaves by itself.
func TestRestart(t *testing.T) {
	conn := pg.NewDB(t, "hub_restart")
	state := filepath.Join(t.TempDir(), "hub")
	hub, stop := startHub(t, conn, state, nil)
	h := newHost(t, t.TempDir())
	h.append(t, events(4, "a")...)
	if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
		t.Fatalf("join: %d %+v", status, ref)
	}
	if status, _, ref := h.ship(t, hub, h.batch(t, 1, 3)); status != http.StatusOK {
		t.Fatalf("batch 1..3: %d %+v", status, ref)
	}
	stop()

	hub2, _ := startHub(t, conn, state, func(o *Options) { o.FleetInterval = 200 * time.Millisecond })
	if hub2.keys.CosignerKey != hub.keys.CosignerKey || hub2.keys.HubID != hub.keys.HubID || hub2.keys.CAFingerprint() != hub.keys.CAFingerprint() {
		t.Fatalf("the restarted hub has other keys")
	}
	h.http = hub2.client(h.cert)
	resp, err := h.http.Get(hub2.url + hubapi.PathHead)
	if err != nil {
		t.Fatal(err)
	}
	var head hubapi.Head
	json.NewDecoder(resp.Body).Decode(&head)
	resp.Body.Close()
	if head.Size != 3 {
		t.Fatalf("head after restart %+v", head)
	}
	status, ok, ref := h.ship(t, hub2, h.batch(t, 4, 5))
	if status != http.StatusOK {
		t.Fatalf("batch 4..5: %d %+v", status, ref)
	}
	verifyCosigned(t, h, ok.Cosigned, 5)
	testkit.WaitFor(t, 10*time.Second, 50*time.Millisecond, func() bool { return hub2.pub.published.Load() == 2 })
}
