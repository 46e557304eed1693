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

// allowAll allows everything; sessions counts the session deciders it
// made.
type allowAll struct{ sessions *int }

func (allowAll) DecideConnect(context.Context, model.Origin) model.Decision {
	return model.Decision{Action: model.Allow}
}
func (allowAll) Decide(context.Context, model.Origin, model.Operation) model.Decision {
	return model.Decision{Action: model.Allow}
}
func (allowAll) DecideEffects(context.Context, model.Origin, model.Operation) model.Decision {
	return model.Decision{Action: model.Allow}
}
func (allowAll) EffectsRules(model.Origin) bool                { return false }
func (allowAll) SessionMasks(model.Origin) *model.MaskSpec     { return nil }
func (a allowAll) SessionDecider(o model.Origin) model.Decider { *a.sessions++; return innerEach{a, o} }

// TestSessionDecisionsCounted: decisions a session's decider makes (kept
// or not) are counted as Decide's are.
func TestSessionDecisionsCounted(t *testing.T) {
	m := New(Gauges{})
	n := 0
	p := CountingPolicy{Inner: allowAll{&n}, M: m}
	o := model.Origin{Target: model.Target{Name: "db", Protocol: model.ProtoPostgres}}
	d := p.SessionDecider(o)
	for range 3 {
		d.Decide(context.Background(), model.Operation{Protocol: model.ProtoPostgres, Kind: "select"})
	}
	if n != 1 {
		t.Errorf("the inner policy's session decider was asked for %d times, want once", n)
	}
	if got := scrape(t, m, `interlock_statements_total{target="db"}`); got != 3 {
		t.Errorf("statements_total = %v, want 3", got)
	}
	if got := scrape(t, m, `interlock_decisions_total{action="allow",protocol="postgres"}`); got != 3 {
		t.Errorf("decisions_total{allow,postgres} = %v, want 3", got)
	}
}
