package metrics

import (
	"testing"
	"time"
)

// TestJournalGaugesAreExported: the queue depth and sync lag a scrape shows
// are what the journal's gauges report.
func TestJournalGaugesAreExported(t *testing.T) {
	since := time.Now().Add(-1500 * time.Millisecond)
	m := New(Gauges{
		JournalQueue: func() float64 { return 7 },
		JournalLag:   func() float64 { return SinceSeconds(since, time.Now()) },
	})
	if got := scrape(t, m, "interlock_journal_queue_depth"); got != 7 {
		t.Errorf("journal_queue_depth = %v, want 7", got)
	}
	if got := scrape(t, m, "interlock_journal_sync_lag_seconds"); got < 1.5 || got > 60 {
		t.Errorf("journal_sync_lag_seconds = %v, want about 1.5", got)
	}
}

func TestSinceSeconds(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		since time.Time
		want  float64
	}{
		{time.Time{}, 0},          // nothing waits
		{now.Add(time.Second), 0}, // a clock step back: no negative lag
		{now.Add(-250 * time.Millisecond), 0.25},
	} {
		if got := SinceSeconds(c.since, now); got != c.want {
			t.Errorf("SinceSeconds(%v) = %v, want %v", c.since, got, c.want)
		}
	}
}
