package engine

import (
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/journal"
)

// TestJournalDefaultsAgree: the config's journal defaults are the
// journal's own. config cannot import journal (it would bring SQLite to
// every reader of a config), so the two constants are kept apart; this
// test is what keeps them equal (the flush interval changed in one and
// had to be changed in the other by hand).
func TestJournalDefaultsAgree(t *testing.T) {
	d := config.Default().Journal
	if got := time.Duration(d.SyncInterval); got != journal.DefaultSyncInterval {
		t.Errorf("config's default sync_interval %v, the journal's %v", got, journal.DefaultSyncInterval)
	}
	if got := flushInterval(d.FlushInterval); got != journal.DefaultFlushInterval {
		t.Errorf("config's default flush_interval %v, the journal's %v", got, journal.DefaultFlushInterval)
	}
}
