package metrics

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// slowJournal's Post waits as the journal's does when a session is over
// its share.
type slowJournal struct{ wait time.Duration }

func (s slowJournal) Append(context.Context, model.Record, model.Durability) (uint64, error) {
	return 1, nil
}

func (s slowJournal) Post(model.Record) { time.Sleep(s.wait) }

func TestRecorderCountsPostBlocked(t *testing.T) {
	m := New(Gauges{})
	r := Recorder{Inner: slowJournal{wait: 20 * time.Millisecond}, M: m}
	for range 3 {
		r.Post(model.Record{Kind: model.KindSSHIO})
	}
	if got := scrape(t, m, "interlock_journal_post_blocked_seconds_total"); got < 0.06 {
		t.Errorf("journal_post_blocked_seconds_total = %v after three 20 ms waits", got)
	}
	if got := scrape(t, m, `interlock_journal_records_total{kind="ssh.io"}`); got != 3 {
		t.Errorf("journal_records_total{kind=ssh.io} = %v, want 3", got)
	}
}

// scrape reads one series from the handler, as Prometheus would.
func scrape(t *testing.T, m *Metrics, series string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	sm := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(w.Body.String())
	if sm == nil {
		t.Fatalf("no %s in:\n%s", series, w.Body.String())
	}
	v, err := strconv.ParseFloat(sm[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
