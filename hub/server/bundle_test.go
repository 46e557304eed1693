package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
)

// operatorCert is a client certificate the hub's CA issued an operator.
func operatorCert(t *testing.T, hub *testHub) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := hub.keys.IssueOperator(key.Public(), "auditor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// getBundle asks for a fleet bundle; it returns the status, the body
// read to its end, and the answer (whose trailers are then read).
func getBundle(t *testing.T, c *http.Client, url string) (int, []byte, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && resp.StatusCode == http.StatusOK {
		// A stream cut short may end in an error; the body so far is
		// what a client has.
		t.Logf("reading the bundle: %v", err)
	}
	return resp.StatusCode, body, resp
}

// TestFleetBundleEndpoint: GET /v1/fleet/bundle serves an operator the
// bundle `interlock hub export` writes, byte for byte, for the fleet, one
// host, or one host from a seq, and it verifies; hosts and clients
// without a certificate are refused, as are bad ranges; a stored row the
// export cannot write cuts the stream short with a trailer saying why.
func TestFleetBundleEndpoint(t *testing.T) {
	hub := newHub(t)
	a, b := newHost(t, t.TempDir()), newHost(t, t.TempDir())
	a.append(t, events(9, "a")...)
	b.append(t, events(2, "b")...)
	for _, h := range []*testHost{a, b} {
		if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
			t.Fatalf("join: %d %+v", status, ref)
		}
	}
	op := hub.client(operatorCert(t, hub))
	url := hub.url + hubapi.PathFleetBundle
	if status, body, _ := getBundle(t, op, url); status != http.StatusNotFound || !strings.Contains(string(body), hubapi.CodeNotFound) {
		t.Errorf("before any fleet checkpoint: %d %s, want 404 not_found", status, body)
	}
	for _, s := range []struct {
		h        *testHost
		from, to int64
	}{{a, 1, 4}, {b, 1, 3}, {a, 5, 10}} {
		if status, _, ref := s.h.ship(t, hub, s.h.batch(t, s.from, s.to)); status != http.StatusOK {
			t.Fatalf("batch %d..%d: %d %+v", s.from, s.to, status, ref)
		}
	}
	ctx := context.Background()
	if _, err := hub.srv.SignFleet(ctx); err != nil {
		t.Fatal(err)
	}
	fv, err := note.NewVerifier(hub.keys.FleetKey)
	if err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string]*http.Client{"no certificate": hub.client(nil), "a host's certificate": a.http} {
		status, body, _ := getBundle(t, c, url)
		var ref hubapi.Refusal
		if status != http.StatusUnauthorized || json.Unmarshal(body, &ref) != nil || ref.Code != hubapi.CodeUnauthorized {
			t.Errorf("%s: %d %.200q, want 401 unauthorized", name, status, body)
		}
	}

	saved := exportPage
	exportPage = 3 // several pages per host, flushed as they go
	t.Cleanup(func() { exportPage = saved })
	plan, err := PlanExport(ctx, hub.st, hub.keys, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var exported bytes.Buffer
	if err := plan.WriteTo(ctx, &exported, nil); err != nil {
		t.Fatal(err)
	}
	verify := func(body []byte) (evidence.FleetReport, *evidence.FleetBundle) {
		t.Helper()
		fb, err := evidence.ReadFleetBundle(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("the served bundle: %v", err)
		}
		return evidence.VerifyFleetBundle(fb, evidence.FleetOptions{FleetKey: fv}), fb
	}
	status, body, resp := getBundle(t, op, url)
	if status != http.StatusOK || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("the fleet's bundle: %d %s %.200q", status, resp.Header.Get("Content-Type"), body)
	}
	if !bytes.Equal(body, exported.Bytes()) {
		t.Errorf("the served bundle (%d bytes) is not the one hub export writes (%d bytes)", len(body), exported.Len())
	}
	if rep, _ := verify(body); !rep.OK || len(rep.Hosts) != 2 {
		t.Errorf("the served bundle does not verify: %+v", rep)
	}
	if e := resp.Trailer.Get(hubapi.TrailerExportError); e != "" {
		t.Errorf("a whole bundle with the trailer %q", e)
	}

	status, body, _ = getBundle(t, op, url+"?host="+a.join.HostID+"&from=5")
	if status != http.StatusOK {
		t.Fatalf("host a from 5: %d %s", status, body)
	}
	rep, fb := verify(body)
	if !rep.OK || len(fb.Hosts) != 1 || fb.Hosts[0].HostID != a.join.HostID || fb.Hosts[0].FirstSeq != 5 || len(fb.Hosts[0].Entries) != 6 {
		t.Errorf("host a from 5: %+v", rep)
	}

	for query, want := range map[string]int{
		"host=" + a.join.HostID + "&from=0":  http.StatusBadRequest,
		"host=" + a.join.HostID + "&from=x":  http.StatusBadRequest,
		"host=" + a.join.HostID + "&from=11": http.StatusBadRequest, // past what the fleet checkpoint covers
		"from=2":                             http.StatusBadRequest, // a seq is one host's
		"host=hnosuchhost":                   http.StatusNotFound,
	} {
		if status, body, _ := getBundle(t, op, url+"?"+query); status != want {
			t.Errorf("?%s: %d %s, want %d", query, status, body, want)
		}
	}

	// A leaf of the wrong size cannot be written in a bundle: past the
	// first page the status is sent, so the bundle is cut short and the
	// trailer names the entry.
	db, err := pgx.Connect(ctx, hub.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if tag, err := db.Exec(ctx, `UPDATE entries SET leaf = '\x00' WHERE host_id = $1 AND seq = 8`, a.join.HostID); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v %v", tag, err)
	}
	status, body, resp = getBundle(t, op, url+"?host="+a.join.HostID)
	if _, err := evidence.ReadFleetBundle(bytes.NewReader(body)); status != http.StatusOK || err == nil {
		t.Errorf("a bundle cut short: %d, parses: %v", status, err)
	}
	if e, want := resp.Trailer.Get(hubapi.TrailerExportError), fmt.Sprintf("entry 8 of %s", a.join.HostID); !strings.Contains(e, want) {
		t.Errorf("the trailer of a bundle cut short: %q, want it to name %q", e, want)
	}
}
