package engine

import (
	"sync"
	"testing"

	"github.com/interlock/interlock/config"
)

// TestJournalPathUnderReloadLock: JournalPath reads the config Reload
// swaps under e.mu. Under -race (make test runs the unit tests with it) a
// read without the lock fails this test.
func TestJournalPathUnderReloadLock(t *testing.T) {
	cfg := func() *config.Config {
		c := config.Default()
		c.Journal.Path = "/var/lib/interlock/journal.db"
		return c
	}
	e := &Engine{cfg: cfg()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			next := cfg()
			e.mu.Lock() // as Reload swaps it
			e.cfg = next
			e.mu.Unlock()
		}
	}()
	for range 200 {
		if p := e.JournalPath(); p != "/var/lib/interlock/journal.db" {
			t.Fatalf("JournalPath = %q", p)
		}
	}
	wg.Wait()
}
