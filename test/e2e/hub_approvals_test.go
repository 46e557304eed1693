package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/decision"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/idptest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/ship"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// The requester's login: psql runs with the audit login uid of "bin"
// (uid 2), as if bin had logged in, so that the hub and the host know the
// requester as a person.
const requesterLogin = "bin"

// hubApprover calls the hub's approver API with an ID token.
type hubApprover struct {
	t   *testing.T
	hub *fleetHub
	hc  *http.Client
}

func newHubApprover(t *testing.T, hub *fleetHub) *hubApprover {
	ca, err := os.ReadFile(filepath.Join(hub.dir, "state", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &hubApprover{t: t, hub: hub, hc: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}}
}

func (a *hubApprover) call(method, path, token string, in any) (int, []byte) {
	a.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.hub.url+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitHeld waits until the hub lists a pending request of rule whose
// text contains text, as token's holder sees it.
func (a *hubApprover) waitHeld(token, rule, text string) hubapi.PendingApproval {
	a.t.Helper()
	var got hubapi.PendingApproval
	testkit.WaitFor(a.t, fleetWait, 100*time.Millisecond, func() bool {
		st, b := a.call("GET", hubapi.PathApprovals, token, nil)
		var list []hubapi.PendingApproval
		if st != http.StatusOK || json.Unmarshal(b, &list) != nil {
			return false
		}
		for _, p := range list {
			if p.Held.Request.Rule == rule && strings.Contains(p.Held.Request.Operation.Text, text) {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

// heldPsql runs script with psql under `interlock run` on the host (its
// daemon intercepts the run), with the requester's login uid.
func heldPsql(t *testing.T, fh *fleetHost, pg *pgtest.Server, script string) *psqlRun {
	t.Helper()
	p := &psqlRun{}
	p.cmd = exec.Command("sh", "-c", `echo 2 > /proc/self/loginuid && exec "$0" "$@"`,
		interlockBin, "run", "-q", "-c", fh.cfgPath, "--", filepath.Join(pg.BinDir, "psql"), "-X", "-v", "VERBOSITY=verbose",
		"-v", "ON_ERROR_STOP=0", "-A", "-t", conninfo(pg, "sslmode=disable"))
	p.cmd.Stdin = strings.NewReader(script)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// injectDecision puts a decision into the hub's database as if the hub
// had signed it: what a hub whose database was taken over serves.
func injectDecision(hub *fleetHub, d hubapi.SignedDecision) {
	raw, _ := json.Marshal(d)
	hub.sql(fmt.Sprintf(`DELETE FROM approval_decisions WHERE request_id = '%s'`, d.RequestID),
		fmt.Sprintf(`INSERT INTO approval_decisions (request_id, host_id, decision, signed, decided_at) VALUES ('%s', '%s', decode('%s', 'hex'), decode('%s', 'hex'), now())`,
			d.RequestID, d.HostID, hex.EncodeToString(raw), hex.EncodeToString([]byte(d.Signed))),
		fmt.Sprintf(`UPDATE held_requests SET state = 'decided' WHERE id = '%s'`, d.RequestID))
}

// waitEntry waits for a journal entry of kind whose data contains s.
func waitEntry(t *testing.T, fh *fleetHost, kind, s string) entry {
	t.Helper()
	var got entry
	testkit.WaitFor(t, fleetWait, 100*time.Millisecond, func() bool {
		for _, en := range fh.entries() {
			if en.Kind == kind && strings.Contains(string(en.Data), s) {
				got = en
				return true
			}
		}
		return false
	})
	return got
}

// TestHubApprovals is issue 18's approvals from anywhere, host and hub
// end to end: a host enrolled with a real hub (PostgreSQL) runs a real
// psql under `interlock run`; its DELETE is held by a review rule and
// shipped to the hub at once. The requester, signed in to the test IdP
// as the login user they are, is refused by the hub; an approver signs
// in and approves through the hub's API; the DELETE completes; the
// host's journal holds the signed decision with the approver's IdP
// identity, journaled before the statement, and the hub holds the same.
// A decision forged into the hub's database, and a replay of the real
// one, are refused by the host and journaled as such; local CLI approval
// still works with the hub configured; with the hub down, the local
// timeout denies.
func TestHubApprovals(t *testing.T) {
	pg := requirePG(t)
	if out, err := pg.PSQL(pgtest.AppDB, "CREATE TABLE held_rows(id int)", "INSERT INTO held_rows SELECT generate_series(1, 3)",
		"CREATE TABLE quick_rows(id int)", "INSERT INTO quick_rows VALUES (1)",
		"GRANT ALL ON held_rows, quick_rows TO "+pgtest.AppUser); err != nil {
		t.Fatalf("target setup: %v %s", err, out)
	}
	idp := idptest.Start(t)
	hub := startFleetHubWith(t, pg, nil, "approvalhub", fmt.Sprintf(`  oidc:
    issuer: %s
    client_id: %s
    roles:
      approver: [dba]
`, idp.Issuer(), idp.ClientID))
	fh := newFleetHost(t, hub, "host-a", []target{pgTarget(t, "db", pg.Addr(), pgtest.AppPassword, "")}, `policy:
  rules:
    - name: review-deletes
      match: {targets: [db], operation: {kinds: [delete], tables: [held_rows]}}
      action: review
      review: {approvers: ["@dba", daemon], timeout: 90s}
    - name: review-quick
      match: {targets: [db], operation: {kinds: [delete], tables: [quick_rows]}}
      action: review
      review: {approvers: ["@dba", daemon], timeout: 3s}
`)
	st, err := ship.LoadState(fh.shipDir)
	if err != nil {
		t.Fatal(err)
	}
	hubKey, err := decision.NewVerifier(st.HubKey)
	if err != nil {
		t.Fatal(err)
	}
	api := newHubApprover(t, hub)
	bob := idp.IDToken(t, idptest.User{Subject: "u-bob", Username: "bob", Email: "bob@example.com", Groups: []string{"dba"}})
	requester := idp.IDToken(t, idptest.User{Subject: "u-bin", Username: requesterLogin, Groups: []string{"dba"}})
	sock := filepath.Join(filepath.Dir(fh.socket), "approvals.sock")

	t.Run("a forged decision is refused, local approval still works", func(t *testing.T) {
		p := heldPsql(t, fh, pg, "DELETE FROM held_rows WHERE id = 1;\n")
		held := api.waitHeld(bob, "review-deletes", "id = 1")
		if held.HostID != fh.hostID || !held.MayDecide || held.Held.Request.Requester.Human == nil ||
			held.Held.Request.Requester.Human.LoginUser != requesterLogin {
			t.Fatalf("held at the hub: %+v", held)
		}
		// Signed by a key of the hub's name that is not the hub's.
		skey, _, _ := note.GenerateKey(rand.Reader, strings.SplitN(st.HubKey, "+", 2)[0])
		forger, err := decision.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		forged := hubapi.SignedDecision{RequestID: held.Held.Request.ID, RequestSHA256: held.Held.RequestSHA256, HostID: fh.hostID,
			Verdict: model.VerdictApprove, Scope: held.Held.Request.Scope, Approver: hubapi.Approver{Issuer: idp.Issuer(), Subject: "u-mallory", Username: "mallory"},
			DecidedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}
		forged.Approvers = []hubapi.Approver{forged.Approver}
		if err := decision.Sign(&forged, forger); err != nil {
			t.Fatal(err)
		}
		injectDecision(hub, forged)
		ref := waitEntry(t, fh, model.KindApprovalRefused, held.Held.Request.ID)
		if !strings.Contains(string(ref.Data), "not signed by the hub") {
			t.Errorf("refusal: %s", ref.Data)
		}
		time.Sleep(500 * time.Millisecond)
		if n := rowCount(t, pg, "held_rows WHERE id = 1"); n != "1" {
			t.Fatalf("the forged decision released the DELETE (%s rows left): %s %s", n, p.out.String(), p.stderr.String())
		}
		if o, stderr, code := asUser(t, "daemon", "approvals", "approve", held.Held.Request.ID, "--socket", sock,
			"--expect", held.Held.Request.TextSHA256, "--reason", "by hand"); code != 0 {
			t.Fatalf("local approval: %d %s %s", code, o, stderr)
		}
		out, stderr := p.wait(t)
		if n := rowCount(t, pg, "held_rows WHERE id = 1"); n != "0" {
			t.Errorf("the locally approved DELETE did not run: %q %q", out, stderr)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("approved through the hub", func(t *testing.T) {
		p := heldPsql(t, fh, pg, "DELETE FROM held_rows WHERE id = 2;\n")
		held := api.waitHeld(bob, "review-deletes", "id = 2")
		id := held.Held.Request.ID
		path := hubapi.PathApprovals + "/" + id + "/decision"
		// The requester, signed in as the login user they are.
		if code, b := api.call("POST", path, requester, hubapi.DecideRequest{Approve: true}); code != http.StatusForbidden || !strings.Contains(string(b), "requester") {
			t.Errorf("the requester approves their own DELETE: %d %s", code, b)
		}
		code, b := api.call("POST", path, bob, hubapi.DecideRequest{Approve: true, ExpectSHA256: held.Held.Request.TextSHA256, Reason: "ticket 18"})
		var sd hubapi.SignedDecision
		if code != http.StatusOK || json.Unmarshal(b, &sd) != nil || sd.Signed == "" {
			t.Fatalf("bob approves: %d %s", code, b)
		}
		out, stderr := p.wait(t)
		if n := rowCount(t, pg, "held_rows WHERE id = 2"); n != "0" {
			t.Errorf("the DELETE approved through the hub did not run: %q %q", out, stderr)
		}

		// The host's journal: the decision whole, with bob's IdP identity,
		// before the statement; it names the journaled request's hash.
		var reqData []byte
		var decSeq, stSeq uint64
		var dec model.ApprovalDecision
		for _, en := range fh.entries() {
			switch {
			case en.Kind == model.KindApprovalRequest && strings.Contains(string(en.Data), id):
				reqData = en.Data
			case en.Kind == model.KindApprovalDecision && strings.Contains(string(en.Data), id):
				json.Unmarshal(en.Data, &dec)
				decSeq = en.Seq
			case en.Kind == model.KindPGStatement && strings.Contains(string(en.Data), "id = 2"):
				stSeq = en.Seq
			}
		}
		sum := sha256.Sum256(reqData)
		if dec.Hub == nil || dec.Hub.Signed != sd.Signed || dec.Hub.Approver.Username != "bob" || dec.Hub.Approver.Issuer != idp.Issuer() ||
			dec.Hub.Approver.Subject != "u-bob" || dec.Verdict != model.VerdictApprove || dec.Reason != "ticket 18" ||
			dec.Hub.RequestSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("journaled decision %+v (request data hash %x)", dec, sum)
		}
		if decSeq == 0 || stSeq == 0 || decSeq > stSeq {
			t.Errorf("decision at seq %d, the DELETE's statement at %d", decSeq, stSeq)
		}
		if dec.Hub != nil {
			if d, err := decision.Open(hubapi.SignedDecision{Signed: dec.Hub.Signed}, hubKey); err != nil || d.RequestID != id || d.HostID != fh.hostID {
				t.Errorf("the journaled note does not verify with hub.pub: %v", err)
			}
		}
		// The hub: the same signed decision, and bob's vote with his IdP
		// identity.
		if got := strings.TrimSpace(hub.sql("SELECT convert_from(signed, 'UTF8') FROM approval_decisions WHERE request_id = '" + id + "'")); got != strings.TrimSpace(sd.Signed) {
			t.Errorf("the hub's decision %q, want %q", got, sd.Signed)
		}
		if got := hub.sql("SELECT username || ' ' || subject || ' ' || approve FROM approval_votes WHERE request_id = '" + id + "'"); got != "bob u-bob true" {
			t.Errorf("the hub's votes: %q", got)
		}

		// A replay of the real decision, served again, is refused: the
		// request is no longer pending.
		injectDecision(hub, sd)
		ref := waitEntry(t, fh, model.KindApprovalRefused, id)
		if !strings.Contains(string(ref.Data), "not pending") {
			t.Errorf("replay refused for %s", ref.Data)
		}
	})

	t.Run("hub down: the local timeout denies", func(t *testing.T) {
		hub.kill()
		out, stderr := heldPsql(t, fh, pg, "DELETE FROM quick_rows WHERE id = 1;\nSELECT 'after';\n").wait(t)
		if !strings.Contains(stderr, "no decision within") || !strings.Contains(out, "after") {
			t.Errorf("the DELETE held while the hub is down: %q %q", out, stderr)
		}
		if n := rowCount(t, pg, "quick_rows"); n != "1" {
			t.Errorf("the timed-out DELETE ran: %s rows left", n)
		}
	})
}

// rowCount counts the rows of "table [WHERE ...]" on the target.
func rowCount(t *testing.T, pg *pgtest.Server, from string) string {
	t.Helper()
	out, err := pg.PSQL(pgtest.AppDB, "SELECT count(*) FROM "+from)
	if err != nil {
		t.Fatalf("count %s: %v %s", from, err, out)
	}
	return strings.TrimSpace(out)
}
