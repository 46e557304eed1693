package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
