package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/interlock/interlock/journal"
)

// OCSF maps sessions to Authentication, statements to Datastore Activity
// and ssh records to SSH Activity, each traceable to its entry.
func TestOCSF(t *testing.T) {
	f := newFixture(t, 3)
	var buf bytes.Buffer
	n, err := OCSF(context.Background(), &buf, OCSFOptions{Journal: f.path})
	if err != nil {
		t.Fatal(err)
	}
	classes := map[int]int{}
	var denied, traced int
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var ev struct {
			ClassUID   int `json:"class_uid"`
			TypeUID    int `json:"type_uid"`
			ActivityID int `json:"activity_id"`
			StatusID   int `json:"status_id"`
			Time       int64
			QueryInfo  *struct {
				QueryString string `json:"query_string"`
			} `json:"query_info"`
			Unmapped struct {
				Interlock struct {
					Seq uint64 `json:"seq"`
				} `json:"interlock"`
			} `json:"unmapped"`
			Actor *struct {
				Process struct {
					PID uint32 `json:"pid"`
				} `json:"process"`
			} `json:"actor"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		classes[ev.ClassUID]++
		if ev.TypeUID != ev.ClassUID*100+ev.ActivityID || ev.Time == 0 {
			t.Errorf("event %s: type_uid/time wrong", sc.Bytes())
		}
		if ev.StatusID == 2 {
			denied++
		}
		if ev.Unmapped.Interlock.Seq > 0 {
			traced++
		}
		if ev.ClassUID == 6005 && (ev.QueryInfo == nil || ev.QueryInfo.QueryString == "" || ev.Actor == nil || ev.Actor.Process.PID == 0) {
			t.Errorf("datastore event without query or actor: %s", sc.Bytes())
		}
	}
	// 4 sessions open and close; 2 statements per pg session; the ssh
	// session has a channel, two requests and an exit.
	if classes[3002] != 8 || classes[6005] != 6 || classes[4007] != 4 || int64(traced) != n || n != 18 {
		t.Errorf("classes %v, %d traced of %d", classes, traced, n)
	}
	if denied != 3 {
		t.Errorf("%d events with status failure, want the 3 denied statements", denied)
	}
	buf.Reset()
	n, err = OCSF(context.Background(), &buf, OCSFOptions{Journal: f.path, Selection: journal.Selection{Session: "ssh-01"}})
	if err != nil || n != 6 {
		t.Errorf("ssh session only: %d events, %v", n, err)
	}
}

// The login user is the actor's user, the process's own user stays the
// event's user and the process's; what OCSF has no attribute for is in
// unmapped.interlock as recorded, provenance and all.
func TestOCSFPrincipals(t *testing.T) {
	f := newFixture(t, 3)
	bySession := map[string]map[string]any{}
	for _, s := range []string{"pg-00", "pg-01", "pg-02"} {
		var buf bytes.Buffer
		if _, err := OCSF(context.Background(), &buf, OCSFOptions{Journal: f.path, Selection: journal.Selection{Session: s}}); err != nil {
			t.Fatal(err)
		}
		// The first statement's event: principals ride on every event of
		// the session, not only its logon.
		line := bytes.Split(buf.Bytes(), []byte("\n"))[1]
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		bySession[s] = ev
	}
	get := func(ev map[string]any, path ...string) any {
		var v any = ev
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}
	for _, c := range []struct {
		session string
		path    []string
		want    any
	}{
		{"pg-00", []string{"actor", "user", "name"}, "alice"},
		{"pg-00", []string{"actor", "user", "uid"}, "1000"},
		{"pg-00", []string{"actor", "session", "uid"}, "3"},
		{"pg-00", []string{"actor", "app_name"}, "claude"},
		{"pg-00", []string{"actor", "process", "user", "name"}, "ci"},
		{"pg-00", []string{"user", "name"}, "ci"},
		{"pg-00", []string{"unmapped", "interlock", "human", "chain"}, []any{map[string]any{"pid": 90.0, "via": "sudo", "from_uid": 1000.0, "from_user": "alice", "to_uid": 0.0, "to_user": "root"}}},
		{"pg-01", []string{"actor", "user", "name"}, "ci"},
		{"pg-01", []string{"actor", "idp", "uid"}, "https://token.actions.githubusercontent.com"},
		{"pg-01", []string{"unmapped", "interlock", "workload", "provenance"}, "verified"},
		{"pg-02", []string{"actor", "idp"}, nil},
		{"pg-02", []string{"unmapped", "interlock", "workload", "provenance"}, "claimed"},
		{"pg-02", []string{"unmapped", "interlock", "workload", "error"}, "token signature invalid"},
	} {
		got := get(bySession[c.session], c.path...)
		if g, w := fmt.Sprint(got), fmt.Sprint(c.want); g != w {
			t.Errorf("%s %v = %s, want %s", c.session, c.path, g, w)
		}
	}
}
