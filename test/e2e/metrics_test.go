package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
)

// TestMetrics: /metrics serves the counters, and they move when traffic
// flows.
func TestMetrics(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "metrics")
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, "127.0.0.1"))
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}},
		fmt.Sprintf("intercept:\n  cgroups: [%s]\nmetrics:\n  listen: %s\n", cgPath, addr))
	e.startDaemon()

	scrape := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	value := func(body, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	before := scrape()
	if v := value(before, "interlock_connections_total"); v != 0 {
		t.Fatalf("connections before traffic = %v, want 0", v)
	}
	for i := 0; i < 3; i++ {
		if out, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr())); code != 0 {
			t.Fatalf("client: %s", out)
		}
	}
	waitSessions(t, e, 3)
	var after string
	waitFor(t, func() bool {
		after = scrape()
		return value(after, `interlock_sessions_total{protocol="tcp"}`) == 3
	})
	checks := map[string]float64{
		"interlock_connections_total":                              3,
		`interlock_journal_records_total{kind="session.open"}`:     3,
		`interlock_decisions_total{action="allow",protocol="tcp"}`: 3,
		`interlock_bpf{name="redirected"}`:                         3,
		`interlock_bpf{name="targets_map_entries"}`:                1,
	}
	for series, want := range checks {
		if got := value(after, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if value(after, "interlock_journal_last_seq") <= value(before, "interlock_journal_last_seq") {
		t.Errorf("journal_last_seq did not move")
	}
	// The writer's queue and sync lag are served (value() is -1 for a
	// series that is absent); idle, nothing waits long.
	if v := value(after, "interlock_journal_queue_depth"); v < 0 || v > 100 {
		t.Errorf("journal_queue_depth = %v, want served and small", v)
	}
	if v := value(after, "interlock_journal_sync_lag_seconds"); v < 0 || v > 5 {
		t.Errorf("journal_sync_lag_seconds = %v, want served and under the sync interval's order", v)
	}
}
