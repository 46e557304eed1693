package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// TestSessionsSearch: an operator's certificate searches session.open
// entries across hosts by host, user, target and time.
func TestSessionsSearch(t *testing.T) {
	hub := newHub(t)
	open := func(user, login, target string) model.Record {
		id := model.Identity{Proc: &model.ProcFacts{User: user}}
		if login != "" {
			id.Human = &model.Human{LoginUser: login}
		}
		return model.Record{Kind: model.KindSessionOpen, Session: "s-" + user, Data: model.SessionOpen{
			Target: model.Target{Name: target, Protocol: model.ProtoPostgres, Address: "db:5432"}, Identity: id}}
	}
	a, b := newHost(t, t.TempDir()), newHost(t, t.TempDir())
	a.append(t, open("alice", "", "prod"), open("bob", "", "staging"))
	b.append(t, open("runner", "alice", "prod"))
	for _, h := range []*testHost{a, b} {
		if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
			t.Fatalf("join: %d %+v", status, ref)
		}
		if status, _, ref := h.ship(t, hub, h.batch(t, 1, int64(h.j.Stats().LastSeq))); status != http.StatusOK {
			t.Fatalf("batch: %d %+v", status, ref)
		}
	}
	op := operatorHTTP(t, hub)
	search := func(query string) []hubapi.Session {
		t.Helper()
		resp, err := op.Get(hub.url + hubapi.PathSessions + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out hubapi.Sessions
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("search %q: %d %v", query, resp.StatusCode, err)
		}
		return out.Sessions
	}
	who := func(ss []hubapi.Session) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.HostName+"/"+s.Session)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	an, bn := "runner-"+a.id[:6], "runner-"+b.id[:6]
	if got, want := who(search("")), strings.Join(sortedStrings(an+"/s-alice", an+"/s-bob", bn+"/s-runner"), " "); got != want {
		t.Errorf("all sessions: %s, want %s", got, want)
	}
	if got, want := who(search("user=alice")), strings.Join(sortedStrings(an+"/s-alice", bn+"/s-runner"), " "); got != want {
		t.Errorf("alice's sessions (as process user or login): %s, want %s", got, want)
	}
	if got := who(search("target=staging")); got != an+"/s-bob" {
		t.Errorf("sessions on staging: %s", got)
	}
	if got := who(search("host=" + b.join.HostID)); got != bn+"/s-runner" {
		t.Errorf("sessions of host b: %s", got)
	}
	if got := search("since=" + time.Now().Add(time.Hour).Format(time.RFC3339)); len(got) != 0 {
		t.Errorf("sessions in the future: %d", len(got))
	}
	s := search("user=bob")
	if len(s) != 1 || !bytes.Contains(s[0].Data, []byte(`"user":"bob"`)) {
		t.Errorf("bob's session data %s", s[0].Data)
	}
	if _, err := evidence.ParseBody(s[0].Body); err != nil {
		t.Errorf("the session's body: %v", err)
	}
	resp, err := op.Get(hub.url + hubapi.PathSessions + "?since=yesterday")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad time: %d", resp.StatusCode)
	}
	// An operator is not a host.
	resp, err = op.Get(hub.url + hubapi.PathHead)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("head with an operator certificate: %d", resp.StatusCode)
	}
}

// operatorHTTP is a client with an operator certificate of the hub.
func operatorHTTP(t *testing.T, hub *testHub) *http.Client {
	t.Helper()
	opKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := hub.keys.IssueOperator(opKey.Public(), "auditor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(opKey)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	return hub.client(&cert)
}

func sortedStrings(s ...string) []string { sort.Strings(s); return s }
