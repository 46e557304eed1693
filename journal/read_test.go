package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

func sessionOpen(target string, tgid, uid uint32, cgroup uint64, exe string) model.SessionOpen {
	o := model.SessionOpen{
		Target:  model.Target{Name: target, Protocol: model.ProtoPostgres, Address: "db:5432"},
		OrigDst: netip.MustParseAddrPort("127.0.0.2:5432"),
		Client:  netip.MustParseAddrPort("127.0.0.1:40000"),
		Identity: model.Identity{Kernel: model.KernelFacts{
			PID: tgid + 1, TGID: tgid, UID: uid, CgroupID: cgroup,
		}},
		Decision: model.Decision{Action: model.Allow},
	}
	if exe != "" {
		o.Identity.Proc = &model.ProcFacts{Exe: exe, CgroupPath: "/ci/job"}
	}
	return o
}

func TestListSessions(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	rec := func(kind, session string, sec int, data any) {
		appendT(t, j, model.Record{Kind: kind, Session: session, Time: at(sec), Data: data}, model.Committed)
	}
	withPrincipals := sessionOpen("pg", 100, 1000, 7, "/usr/bin/psql")
	login := uint32(1000)
	withPrincipals.Identity.Human = &model.Human{LoginUID: &login, LoginUser: "alice", Provenance: model.ProvProc}
	withPrincipals.Identity.Workload = &model.Workload{Provenance: model.ProvVerified, Claims: map[string]string{"repository": "acme/billing"}}
	withPrincipals.Identity.Agent = &model.Agent{Name: "claude", PID: 99, MatchedBy: "exe", Provenance: model.ProvProc}
	rec(model.KindSessionOpen, "a", 0, withPrincipals)
	rec("pg.statement", "a", 1, map[string]string{"sql": "select 1"})
	rec(model.KindSessionOpen, "b", 2, sessionOpen("ssh", 200, 0, 8, ""))
	rec("pg.statement", "a", 3, map[string]string{"sql": "select 2"})
	rec(model.KindSessionClose, "a", 4, model.SessionClose{BytesUp: 10, BytesDown: 20, DurationNS: int64(4 * time.Second)})
	rec(model.KindSessionOpen, "c", 5, sessionOpen("pg", 300, 1001, 7, "/usr/bin/pg_dump"))
	rec(model.KindSessionClose, "c", 6, model.SessionClose{Error: "upstream reset"})
	j.Close()

	ctx := context.Background()
	all, err := ListSessions(ctx, path, SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ss []SessionSummary) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids(all); got != "c,b,a" {
		t.Fatalf("sessions %s, want newest first c,b,a", got)
	}
	a := all[2]
	if a.OpenSeq != 2 || !a.Open.Equal(at(0)) || a.Close == nil || !a.Close.Equal(at(4)) ||
		a.Target != "pg" || a.PID != 100 || a.UID != 1000 || a.CgroupID != 7 || a.Exe != "/usr/bin/psql" ||
		a.CgroupPath != "/ci/job" || a.BytesUp != 10 || a.BytesDown != 20 || a.DurationNS != int64(4*time.Second) ||
		a.OrigDst.String() != "127.0.0.2:5432" || a.Client.String() != "127.0.0.1:40000" {
		t.Errorf("session a = %+v", a)
	}
	if b := all[1]; b.Human != nil || b.Workload != nil || b.Agent != nil || b.Close != nil || b.Exe != "" || b.Target != "ssh" || b.PID != 200 {
		t.Errorf("open session b = %+v", b)
	}
	if c := all[0]; c.Error != "upstream reset" || c.Close == nil {
		t.Errorf("session c = %+v", c)
	}
	js, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"open_seq":2`, `"orig_dst":"127.0.0.2:5432"`, `"cgroup_path":"/ci/job"`, `"bytes_down":20`, `"duration_ns":4000000000`,
		`"human":{"login_uid":1000,"login_user":"alice","provenance":"proc"}`, `"workload":{"provenance":"verified","claims":{"repository":"acme/billing"}}`,
		`"agent":{"name":"claude","pid":99,"matched_by":"exe","provenance":"proc"}`} {
		if !strings.Contains(string(js), field) {
			t.Errorf("JSON %s lacks %s", js, field)
		}
	}

	for _, c := range []struct {
		f    SessionFilter
		want string
	}{
		{SessionFilter{Since: at(2)}, "c,b"},
		{SessionFilter{Since: at(3)}, "c"},
		{SessionFilter{Since: at(99)}, ""},
		{SessionFilter{CgroupID: 7}, "c,a"},
		{SessionFilter{CgroupID: 9}, ""},
		{SessionFilter{Limit: 2}, "c,b"},
		{SessionFilter{CgroupID: 7, Limit: 1}, "c"},
		{SessionFilter{CgroupID: 8, Since: at(1)}, "b"},
	} {
		got, err := ListSessions(ctx, path, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != c.want {
			t.Errorf("ListSessions(%+v) = %s, want %s", c.f, ids(got), c.want)
		}
	}
}

// ListSessions must stay cheap on a journal with millions of statements:
// the plan may only search indexes, never scan the table or sort.
func TestListSessionsUsesIndexes(t *testing.T) {
	path := tempPath(t)
	openT(t, Options{Path: path}).Close()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`EXPLAIN QUERY PLAN `+sessionsQuery, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "USING INDEX entries_opens") || !strings.Contains(text, "INDEX entries_bounds") ||
		strings.Contains(text, "SCAN") || strings.Contains(text, "TEMP B-TREE") {
		t.Errorf("sessions query plan:\n%s", text)
	}
}

func TestEntriesFrom(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	for range 9 {
		appendT(t, j, model.Record{Kind: "k"}, model.Committed)
	}
	j.Close()
	var seqs []uint64
	stop := errors.New("stop")
	err := Entries(context.Background(), path, 4, func(e Entry) error {
		seqs = append(seqs, e.Seq)
		if len(e.Hash) != evidence.HashSize || len(e.Body) == 0 || e.Kind != "k" || e.TimeNS == 0 {
			t.Errorf("entry %+v", e)
		}
		if e.Seq == 7 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("Entries returned %v, want fn's error unchanged", err)
	}
	if len(seqs) != 4 || seqs[0] != 4 || seqs[3] != 7 {
		t.Errorf("visited %v, want 4..7", seqs)
	}
}

// A session's entries are found between its open and its close, without
// an index over every entry: SessionEntries walks that range (and stops at
// the close), SelectRange finds records of the session after its close as
// well, and both find the bounds by entries_bounds, not by a scan.
func TestSessionEntriesAndSelectRange(t *testing.T) {
	path := tempPath(t)
	j := openT(t, Options{Path: path})
	rec := func(kind, session string) uint64 {
		return appendT(t, j, model.Record{Kind: kind, Session: session, Data: map[string]int{"n": 1}}, model.Committed)
	}
	rec("before", "a") // a record of a before its open: not a's in SessionEntries
	aOpen := rec(model.KindSessionOpen, "a")
	rec(model.KindSessionOpen, "b")
	aIO := rec(model.KindSSHIO, "a")
	rec(model.KindSSHIO, "b")
	aClose := rec(model.KindSessionClose, "a")
	rec(model.KindSSHIO, "b")
	aLate := rec(model.KindAnomaly, "a")
	bLast := rec(model.KindSSHIO, "b")
	j.Close()

	snap, err := OpenSnapshot(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	visit := func(session string) (seqs []uint64) {
		if err := snap.SessionEntries(session, snap.Head, func(e Entry) error {
			if e.Session != session {
				t.Errorf("entry %d of session %q in %s's walk", e.Seq, e.Session, session)
			}
			seqs = append(seqs, e.Seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return seqs
	}
	if got, want := fmt.Sprint(visit("a")), fmt.Sprint([]uint64{aOpen, aIO, aClose}); got != want {
		t.Errorf("SessionEntries(a) = %s, want %s", got, want)
	}
	if got := visit("b"); len(got) != 4 || got[3] != bLast {
		t.Errorf("SessionEntries(b) = %v, want 4 entries up to %d", got, bLast)
	}
	if got := visit("none"); len(got) != 0 {
		t.Errorf("SessionEntries(none) = %v", got)
	}
	lo, hi, found, err := snap.SelectRange(Selection{Session: "a"}, snap.Head)
	if err != nil || !found || lo != int64(aOpen) || hi != int64(aLate) {
		t.Errorf("SelectRange(a) = %d, %d, %v, %v; want %d to %d", lo, hi, found, err, aOpen, aLate)
	}

	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`EXPLAIN QUERY PLAN `+sqlSessionBounds, "a", 99)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if text := strings.Join(plan, "\n"); strings.Count(text, "USING COVERING INDEX entries_bounds") != 2 || strings.Contains(text, "SCAN entries") {
		t.Errorf("session bounds plan:\n%s", text)
	}
}
