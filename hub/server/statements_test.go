package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// TestStatementsSearch: an operator searches the statements and ssh
// commands of every host by host, session, the session's user and
// target, kind, table, action, text and time; what it gets is each
// entry's body; a host's certificate cannot search.
func TestStatementsSearch(t *testing.T) {
	hub := newHub(t)
	open := func(session, user, login, target string, proto model.Protocol) model.Record {
		id := model.Identity{Proc: &model.ProcFacts{User: user}}
		if login != "" {
			id.Human = &model.Human{LoginUser: login}
		}
		return model.Record{Kind: model.KindSessionOpen, Session: session, Data: model.SessionOpen{
			Target: model.Target{Name: target, Protocol: proto, Address: "t:1"}, Identity: id}}
	}
	stmt := func(session, sql string, action model.Action, rule string, kinds, tables []string) model.Record {
		return model.Record{Kind: model.KindPGStatement, Session: session, Data: model.PGStatement{
			SQL: sql, Protocol: "simple", Kinds: kinds, Tables: tables, Decision: model.Decision{Action: action, Rule: rule}}}
	}
	a, b := newHost(t, t.TempDir()), newHost(t, t.TempDir())
	a.append(t,
		open("pa", "alice", "", "prod", model.ProtoPostgres),
		stmt("pa", "SELECT * FROM accounts WHERE note = '50%_off'", model.Allow, "", []string{"select"}, []string{"accounts"}),
		stmt("pa", "DROP TABLE accounts", model.Deny, "no-drop", []string{"drop_table"}, []string{"accounts"}),
		model.Record{Kind: model.KindPGResult, Session: "pa", Data: model.PGResult{Statement: 2}},
	)
	b.append(t,
		open("sb", "runner", "bob", "bastion", model.ProtoSSH),
		model.Record{Kind: model.KindSSHRequest, Session: "sb", Data: model.SSHRequest{Type: "pty-req", Term: "xterm"}},
		model.Record{Kind: model.KindSSHRequest, Session: "sb", Data: model.SSHRequest{Type: "exec", Command: "rm -rf /var/lib/db",
			Decision: model.Decision{Action: model.Review, Rule: "rm"}}},
		// An operation without a session.open the hub holds.
		stmt("orphan", "select 1", model.Allow, "", []string{"select"}, nil),
	)
	for _, h := range []*testHost{a, b} {
		if status, ref := h.enrol(t, hub, hub.token(t, time.Hour)); status != http.StatusOK {
			t.Fatalf("join: %d %+v", status, ref)
		}
		if status, _, ref := h.ship(t, hub, h.batch(t, 1, int64(h.j.Stats().LastSeq))); status != http.StatusOK {
			t.Fatalf("batch: %d %+v", status, ref)
		}
	}
	op := operatorHTTP(t, hub)
	search := func(q url.Values) []hubapi.Statement {
		t.Helper()
		resp, err := op.Get(hub.url + hubapi.PathStatements + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out hubapi.Statements
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("search %q: %d %v", q.Encode(), resp.StatusCode, err)
		}
		return out.Statements
	}
	an, bn := "runner-"+a.id[:6], "runner-"+b.id[:6]
	texts := func(ss []hubapi.Statement) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.HostName+":"+s.Text)
		}
		sort.Strings(out)
		return strings.Join(out, " | ")
	}
	for _, c := range []struct {
		q    url.Values
		want []string
	}{
		{url.Values{}, []string{an + ":SELECT * FROM accounts WHERE note = '50%_off'", an + ":DROP TABLE accounts", bn + ":rm -rf /var/lib/db", bn + ":select 1"}},
		{url.Values{"host": {b.join.HostID}}, []string{bn + ":rm -rf /var/lib/db", bn + ":select 1"}},
		{url.Values{"session": {"orphan"}}, []string{bn + ":select 1"}},
		{url.Values{"user": {"alice"}}, []string{an + ":SELECT * FROM accounts WHERE note = '50%_off'", an + ":DROP TABLE accounts"}},
		{url.Values{"user": {"bob"}}, []string{bn + ":rm -rf /var/lib/db"}},
		{url.Values{"user": {"runner"}}, []string{bn + ":rm -rf /var/lib/db"}},
		{url.Values{"target": {"bastion"}}, []string{bn + ":rm -rf /var/lib/db"}},
		{url.Values{"kind": {"select"}}, []string{an + ":SELECT * FROM accounts WHERE note = '50%_off'", bn + ":select 1"}},
		{url.Values{"kind": {"exec"}}, []string{bn + ":rm -rf /var/lib/db"}},
		{url.Values{"kind": {model.KindPGStatement}, "host": {a.join.HostID}}, []string{an + ":SELECT * FROM accounts WHERE note = '50%_off'", an + ":DROP TABLE accounts"}},
		{url.Values{"table": {"accounts"}, "action": {"deny"}}, []string{an + ":DROP TABLE accounts"}},
		{url.Values{"action": {"review"}}, []string{bn + ":rm -rf /var/lib/db"}},
		{url.Values{"action": {"mask"}}, nil},
		{url.Values{"text": {"drop table"}}, []string{an + ":DROP TABLE accounts"}},
		// LIKE's wildcards are the text's own characters.
		{url.Values{"text": {"50%_"}}, []string{an + ":SELECT * FROM accounts WHERE note = '50%_off'"}},
		{url.Values{"text": {"5_%"}}, nil},
		{url.Values{"text": {`\`}}, nil},
		{url.Values{"since": {time.Now().Add(time.Hour).Format(time.RFC3339)}}, nil},
		{url.Values{"until": {time.Now().Add(-time.Hour).Format(time.RFC3339)}}, nil},
	} {
		sort.Strings(c.want)
		if got := texts(search(c.q)); got != strings.Join(c.want, " | ") {
			t.Errorf("search %s: %s, want %s", c.q.Encode(), got, strings.Join(c.want, " | "))
		}
	}

	got := search(url.Values{"action": {"deny"}})
	if len(got) != 1 {
		t.Fatalf("denied statements: %d", len(got))
	}
	d := got[0]
	if d.HostID != a.join.HostID || d.Seq != 4 || d.Session != "pa" || d.Target != "prod" || d.User != "alice" || d.Kind != model.KindPGStatement ||
		strings.Join(d.Kinds, ",") != "drop_table" || strings.Join(d.Tables, ",") != "accounts" || d.Decision.Rule != "no-drop" || d.TimeNS == 0 {
		t.Errorf("the denied statement: %s seq %d session %s target %s user %s kind %s %v %v %+v", d.HostID, d.Seq, d.Session, d.Target, d.User, d.Kind, d.Kinds, d.Tables, d.Decision)
	}
	if body, err := evidence.ParseBody(d.Body); err != nil || body.Seq != 4 || string(body.Data) != string(d.Data) {
		t.Errorf("its body: %v", err)
	}
	if got := search(url.Values{"limit": {"1"}}); len(got) != 1 {
		t.Errorf("limit 1: %d", len(got))
	}

	for q, want := range map[string]int{
		"action=permit":                    http.StatusBadRequest,
		"since=yesterday":                  http.StatusBadRequest,
		"limit=0":                          http.StatusBadRequest,
		"text=" + strings.Repeat("x", 257): http.StatusBadRequest,
	} {
		resp, err := op.Get(hub.url + hubapi.PathStatements + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%.30s: %d, want %d", q, resp.StatusCode, want)
		}
	}
	// A host is not an operator; nor is a client without a certificate.
	for name, c := range map[string]*http.Client{"a host": a.http, "no certificate": hub.client(nil)} {
		resp, err := c.Get(hub.url + hubapi.PathStatements)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("search with %s: %d", name, resp.StatusCode)
		}
	}
}
