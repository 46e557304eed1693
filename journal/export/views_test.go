package export

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// spoof is client text that would show an auditor something else: a
// second line, an escape sequence, a bidi override, markup.
const spoof = "select 1;\n\x1b[8mdrop table t\x1b[0m -- \u202egnp.exe <script>x</script>"

func TestSummaryEscapesClientText(t *testing.T) {
	var b bytes.Buffer
	err := summaryTemplate.Execute(&b, map[string]any{
		"M":          &evidence.Manifest{},
		"Sessions":   []*sessionRow{{ID: "s1", Exe: "/tmp/x\x1b[1A/usr/bin/psql\u202e", User: "bot\u200b"}},
		"Identities": []*identityRow{{Exe: "/tmp/x\x1b[1A/usr/bin/psql"}},
		"Approvals":  []eventRow{{Seq: 1, What: spoof}},
		"Counts":     struct{ Denials, Approvals, Masks int }{},
		"MaxRows":    maxRows, "SessionCount": 1, "IdentityCount": 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\u202e", "\u200b", "<script>"} {
		if strings.Contains(out, bad) {
			t.Errorf("summary.html holds a raw %q", bad)
		}
	}
	// Every line of the statement, each escaped, kept apart by a real
	// newline in the pre-wrap cell.
	for _, want := range []string{
		"select 1;\n" + `\x1b[8mdrop table t\x1b[0m -- \u202egnp.exe &lt;script&gt;`,
		`/tmp/x\x1b[1A/usr/bin/psql\u202e`,
		`bot\u200b`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary.html lacks %q", want)
		}
	}
}

func TestCSVCellsAreVisibleAndInert(t *testing.T) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{cell(spoof), cell("=HYPERLINK(\"http://x\")"), cell("@SUM(1)"), cell("\x1b]8;;http://x\x07")})
	w.Flush()
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := recs[0]
	if got[0] != "select 1;\n"+`\x1b[8mdrop table t\x1b[0m -- \u202egnp.exe <script>x</script>` {
		t.Errorf("sql cell %q", got[0])
	}
	if got[1] != `'=HYPERLINK("http://x")` || got[2] != "'@SUM(1)" {
		t.Errorf("formula cells %q %q", got[1], got[2])
	}
	if got[3] != `\x1b]8;;http://x\x07` {
		t.Errorf("escape cell %q", got[3])
	}
}

// A principal's text is the client's to choose too: a login name or a
// claimed repository that starts like a formula is guarded.
func TestPrincipalCellsAreInert(t *testing.T) {
	login := uint32(1000)
	got := principalCells(model.Identity{
		Human:    &model.Human{LoginUID: &login, LoginUser: "-2+3"},
		Workload: &model.Workload{Provenance: model.ProvClaimed, Claims: map[string]string{"repository": "=acme/x"}},
	})
	if got[0] != "'-2+3 (login uid 1000)" {
		t.Errorf("human cell %q", got[0])
	}
	if got[1] != "'=acme/x (claimed)" || got[2] != "" {
		t.Errorf("workload, agent cells %q %q", got[1], got[2])
	}
}
