package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// testFleetStatements: `interlock statements list --hub` finds the
// SELECT the hosts' psql sessions ran, each on the host that journaled
// it, with its session's target and the masking decision; a host's
// certificate cannot search.
func testFleetStatements(t *testing.T, hub *fleetHub, hosts []*fleetHost) {
	op := filepath.Join(t.TempDir(), "operator")
	if _, stderr, code := hub.interlock("operator", "--name", "auditor", "--out", op); code != 0 {
		t.Fatalf("hub operator: exit %d: %s", code, stderr)
	}
	list := func(dir string, args ...string) ([]hubapi.Statement, int, string) {
		t.Helper()
		out, stderr, code := runCmd(t, exec.Command(interlockBin, append([]string{"statements", "list", "--hub", hub.url, "--operator", dir, "--json", "--limit", "1000"}, args...)...))
		var found []hubapi.Statement
		if code == 0 && json.Unmarshal([]byte(out), &found) != nil {
			t.Fatalf("statements list --hub %v: %.300s", args, out)
		}
		return found, code, stderr
	}
	for _, fh := range hosts {
		want := map[int64]bool{}
		for _, en := range fh.entries() {
			var d model.PGStatement
			if en.Kind == model.KindPGStatement && json.Unmarshal(en.Data, &d) == nil && strings.Contains(strings.ToLower(d.SQL), "from customers") {
				want[int64(en.Seq)] = true
			}
		}
		found, code, stderr := list(op, "--host", fh.hostID, "--text", "FROM Customers", "--kind", "select", "--target", "db")
		if code != 0 {
			t.Fatalf("%s: statements list --hub: exit %d %s", fh.name, code, stderr)
		}
		for _, s := range found {
			if s.HostID != fh.hostID || s.HostName != fh.name || !want[s.Seq] || s.Target != "db" ||
				s.Decision.Action != model.Mask || !strings.Contains(s.Text, "customers") {
				t.Errorf("%s: the hub found statement %d of host %s (%s): %q %s on %q", fh.name, s.Seq, s.HostID, s.HostName, s.Text, s.Decision.Action, s.Target)
			}
		}
		if len(want) == 0 || len(found) != len(want) {
			t.Errorf("%s: the hub found %d statements reading customers, the journal has %d", fh.name, len(found), len(want))
		}
	}
	if found, _, _ := list(op, "--text", "no-such-statement-text"); len(found) != 0 {
		t.Errorf("statements of a text no host ran: %d", len(found))
	}
	out, stderr, code := runCmd(t, exec.Command(interlockBin, "statements", "list", "--hub", hub.url, "--operator", op, "--limit", "2", "--text", "customers"))
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "FROM customers") {
		t.Errorf("statements list --hub: exit %d\n%s%s", code, out, stderr)
	}

	// A host's certificate chains to the hub's CA but is no operator's.
	hostDir := filepath.Join(t.TempDir(), "host-as-operator")
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"client.crt": "operator.crt", "client.key": "operator.key", "ca.crt": "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(hosts[0].shipDir, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hostDir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, code, stderr := list(hostDir); code != 69 || !strings.Contains(stderr, hubapi.CodeUnauthorized) {
		t.Errorf("statements list --hub with a host's certificate: exit %d %s", code, stderr)
	}
}
