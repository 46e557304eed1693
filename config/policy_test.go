package config

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

const pgTargetYAML = "targets:\n  - {name: db, protocol: postgres, address: \"a:1\", credentials: {user: u}}\n"

// policyErrorTests are files with one policy problem each (the first
// reported).
var policyErrorTests = []struct {
	name string
	src  string
	line int
	key  string
	msg  string
}{
	{"misspelt kind", "policy:\n  rules:\n    - name: r\n      match: {operation: {kinds: [select, drop_databse]}}\n      action: deny\n",
		4, "policy.rules[0].match.operation.kinds[1]", `"drop_databse" is not an operation kind; did you mean drop_database?`},
	{"kind in capitals", "policy:\n  rules:\n    - {name: r, match: {operation: {kinds: [DELETE]}}, action: deny}\n",
		3, "policy.rules[0].match.operation.kinds[0]", `"DELETE" must be written in lowercase: delete`},
	{"kind alias", "policy:\n  rules:\n    - {name: r, match: {operation: {kinds: [create_materialized_view]}}, action: deny}\n",
		3, "policy.rules[0].match.operation.kinds[0]", "did you mean create_matview?"},
	{"class as kind", "policy:\n  rules:\n    - {name: r, match: {operation: {kinds: [write]}}, action: deny}\n",
		3, "policy.rules[0].match.operation.kinds[0]", `"write" is a class of kinds, not a kind; name the kinds: copy_from, delete, insert`},
	{"glob as kind", "policy:\n  rules:\n    - {name: r, match: {operation: {kinds: [drop_*]}}, action: deny}\n",
		3, "policy.rules[0].match.operation.kinds[0]", "kinds are not globs"},
	{"nonsense kind", "policy:\n  rules:\n    - {name: r, match: {operation: {kinds: [xyzzy]}}, action: deny}\n",
		3, "policy.rules[0].match.operation.kinds[0]", `"xyzzy" is not an operation kind (docs/policy.md lists the kinds)`},
	{"deny_statements typo", "targets:\n  - name: db\n    protocol: postgres\n    address: a:1\n    credentials: {user: u}\n    deny_statements: [truncate, drop_tabel]\n",
		6, "targets[0].deny_statements[1]", "did you mean drop_table?"},
	{"check_effects on tcp", "targets:\n  - name: web\n    protocol: tcp\n    address: a:1\n    check_effects: false\n",
		5, "targets[0].check_effects", "applies to postgres targets only"},
	{"bad unknown", "policy:\n  unknown: ignore\n", 2, "policy.unknown", `"ignore" is not one of: deny, review, allow`},
	{"unknown review without approvers", "policy:\n  default: deny\n  unknown: review\n", 3, "policy.unknown_review", "is required with policy.unknown: review"},
	{"unknown review empty", "policy:\n  unknown: review\n  unknown_review: {needed: 1}\n", 3, "policy.unknown_review.approvers", "is required"},
	{"unknown_review without review", "policy:\n  unknown_review: {approvers: [a]}\n", 2, "policy.unknown_review", "applies to policy.unknown: review only"},
	{"effects on allow", "policy:\n  rules:\n    - name: r\n      match:\n        effects: {dropped: true}\n      action: allow\n",
		5, "policy.rules[0].match.effects", "applies to deny and review rules only (this rule's action is allow)"},
	{"effects on mask", "policy:\n  rules:\n    - name: r\n      match:\n        effects: {dropped: true}\n      action: mask\n      mask: {detectors: [email]}\n",
		5, "policy.rules[0].match.effects", "applies to deny and review rules only"},
	{"effects and operation", "policy:\n  rules:\n    - name: r\n      match:\n        operation: {kinds: [delete]}\n        effects: {dropped: true}\n      action: deny\n",
		5, "policy.rules[0].match.operation", "cannot also have match.operation"},
	{"effects without condition", "policy:\n  rules:\n    - name: r\n      match:\n        effects: {tables: [orders]}\n      action: deny\n",
		5, "policy.rules[0].match.effects", "names no condition"},
	{"effects bad glob", "policy:\n  rules:\n    - name: r\n      match:\n        effects:\n          tables: [\"[x\"]\n          dropped: true\n      action: deny\n",
		6, "policy.rules[0].match.effects.tables[0]", "is not a valid glob"},
	{"bad mask transfers", "policy:\n  rules:\n    - name: r\n      action: mask\n      mask: {detectors: [email], transfers: block}\n",
		5, "policy.rules[0].mask.transfers", `"block" is not one of: mask, refuse`},
	{"effects unknown key", "policy:\n  rules:\n    - name: r\n      match:\n        effects: {droped: true}\n      action: deny\n",
		5, "policy.rules[0].match.effects.droped", "did you mean dropped?"},
}

func TestPolicyErrors(t *testing.T) {
	for _, tt := range policyErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := firstError(t, tt.src)
			if e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %v\nwant line %d key %s msg containing %q", err, tt.line, tt.key, tt.msg)
			}
		})
	}
}

func TestPolicyAccepted(t *testing.T) {
	src := `targets:
  - name: db
    protocol: postgres
    address: a:1
    credentials: {user: u}
    deny_statements: [drop_database, truncate, unknown]
    check_effects: false
policy:
  default: deny
  unknown: review
  unknown_review: {approvers: [dba], timeout: 10m}
  rules:
    - {name: a, match: {operation: {kinds: [select, lock, opaque, unknown, connect, shell, x11, create_matview, alter_role]}}, action: allow}
    - {name: b, match: {operation: {kinds: [delete], include_opaque: false}}, action: review, review: {approvers: [x]}}
    - name: c
      match:
        targets: [db]
        effects: {tables: [orders, "pg_catalog.*"], dropped: true, truncated: true, altered: true, catalog: true, roles: true}
      action: deny
`
	cfg, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy
	if p.UnknownAction() != "review" || p.UnknownReview == nil || p.Timeout(p.UnknownReview).String() != "10m0s" {
		t.Errorf("policy.unknown %+v", p)
	}
	if cfg.Targets[0].EffectsChecked() {
		t.Errorf("check_effects: false read as true")
	}
	if e := p.Rules[2].Match.Effects; e == nil || !e.HasCondition() || len(e.Tables) != 2 || !e.Roles {
		t.Errorf("effects %+v", e)
	}
	if io := p.Rules[1].Match.Operation.IncludeOpaque; io == nil || *io {
		t.Errorf("include_opaque %v", io)
	}
	if Default().Policy.UnknownAction() != "deny" || !(TargetConfig{}).EffectsChecked() {
		t.Errorf("defaults of policy.unknown and check_effects")
	}
}

// TestEffectsCountsValidate: the row thresholds, checked on a config built
// in code.
func TestEffectsCountsValidate(t *testing.T) {
	neg, zero := int64(-1), int64(0)
	cfg := Default()
	cfg.Policy.Rules = []RuleConfig{
		{Name: "neg", Action: "deny", Match: MatchConfig{Effects: &EffectsMatch{RowsDeletedOver: &neg}}},
		{Name: "zero", Action: "review", Review: &ReviewConfig{Approvers: []string{"a"}}, Match: MatchConfig{Effects: &EffectsMatch{RowsWrittenOver: &zero}}},
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "policy.rules[0].match.effects.rows_deleted_over: -1 is negative") {
		t.Fatalf("negative threshold: %v", err)
	}
	if strings.Contains(err.Error(), "rules[1]") {
		t.Errorf("rows_written_over: 0 refused: %v", err)
	}
}

// TestEffectsCountsParse parses the row thresholds from YAML (*int64
// fields, which the decoder once panicked on).
func TestEffectsCountsParse(t *testing.T) {
	src := pgTargetYAML + "policy:\n  rules:\n    - name: r\n      match:\n        effects: {tables: [orders], rows_deleted_over: 100, rows_written_over: 0}\n      action: deny\n"
	var (
		cfg *Config
		err error
	)
	panicked := func() (p any) {
		defer func() { p = recover() }()
		cfg, err = Parse("test.yaml", []byte(src))
		return nil
	}()
	if panicked != nil {
		t.Fatalf("decoding the *int64 row thresholds of match.effects panicked: %v", panicked)
	}
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Policy.Rules[0].Match.Effects
	if e.RowsDeletedOver == nil || *e.RowsDeletedOver != 100 || e.RowsWrittenOver == nil || *e.RowsWrittenOver != 0 || e.RowsInsertedOver != nil {
		t.Errorf("thresholds %+v", e)
	}
}

func TestKindProblem(t *testing.T) {
	for _, k := range append(append(model.SQLKinds(), model.SSHKinds...), model.TCPKinds...) {
		if msg := KindProblem(k); msg != "" {
			t.Errorf("%s refused: %s", k, msg)
		}
	}
	for k, want := range map[string]string{
		"selec":          "did you mean select?",
		"drop_databse":   "did you mean drop_database?",
		"port_forward":   "did you mean port_forwarding or portforward?",
		"copy":           "did you mean copy_from or copy_to?",
		"ddl":            "is a class of kinds",
		"Select":         "must be written in lowercase: select",
		"totally_random": "is not an operation kind (docs/policy.md",
	} {
		if got := KindProblem(k); !strings.Contains(got, want) {
			t.Errorf("KindProblem(%q) = %q, want it to contain %q", k, got, want)
		}
	}
}

var updateDocs = flag.Bool("update-docs", false, "rewrite the statement kinds list in docs/policy.md")

const (
	kindsBegin = "<!-- statement kinds: generated by TestDocsListEveryKind (go test ./config -update-docs) -->"
	kindsEnd   = "<!-- end of statement kinds -->"
)

// kindClassOrder is the order docs/policy.md lists the classes in.
var kindClassOrder = []model.KindClass{model.KindRead, model.KindWrite, model.KindDDL, model.KindTransaction,
	model.KindSession, model.KindCode, model.KindMaintenance, model.KindSpecial}

// kindsDoc is the list of statement kinds docs/policy.md must hold: every
// kind of model.SQLKinds, grouped by class.
func kindsDoc() string {
	byClass := map[model.KindClass][]string{}
	for _, k := range model.SQLKinds() {
		c, _ := model.SQLKindClass(k)
		byClass[c] = append(byClass[c], k)
	}
	classes := append([]model.KindClass(nil), kindClassOrder...)
	var extra []model.KindClass
	for c := range byClass {
		known := false
		for _, k := range kindClassOrder {
			known = known || k == c
		}
		if !known {
			extra = append(extra, c)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	classes = append(classes, extra...)

	var b strings.Builder
	b.WriteString(kindsBegin + "\n\n")
	for _, c := range classes {
		kinds := byClass[c]
		if len(kinds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- **%s** (%d):", c, len(kinds))
		width := 1000 // start a new line at once
		for i, k := range kinds {
			item := " `" + k + "`"
			if i < len(kinds)-1 {
				item += ","
			}
			if width+len(item) > 100 {
				b.WriteString("\n ")
				width = 1
			}
			b.WriteString(item)
			width += len(item)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + kindsEnd)
	return b.String()
}

// TestDocsListEveryKind ties docs/policy.md to model.SQLKinds: the doc's
// list of statement kinds must be exactly the model's, by class.
func TestDocsListEveryKind(t *testing.T) {
	const path = "../docs/policy.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start, end := strings.Index(doc, kindsBegin), strings.Index(doc, kindsEnd)
	if start < 0 || end < start {
		t.Fatalf("%s has no statement kinds section between %q and %q", path, kindsBegin, kindsEnd)
	}
	want := kindsDoc()
	got := doc[start : end+len(kindsEnd)]
	if got == want {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(doc[:start]+want+doc[end+len(kindsEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the statement kinds in %s", path)
		return
	}
	// Name the kinds that differ, then the whole list to paste.
	inDoc := map[string]bool{}
	for _, f := range strings.Split(got, "`") {
		inDoc[f] = true
	}
	for _, k := range model.SQLKinds() {
		if !inDoc[k] {
			t.Errorf("%s does not list kind %s", path, k)
		}
	}
	for i, f := range strings.Split(got, "`") {
		if i%2 == 1 && !model.IsSQLKind(f) {
			t.Errorf("%s lists %s, which is not a statement kind", path, f)
		}
	}
	t.Errorf("%s: the statement kinds list differs from model.SQLKinds(); run go test ./config -run TestDocsListEveryKind -update-docs, or paste:\n%s", path, want)
}
