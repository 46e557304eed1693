package deptest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sqlite is the cgo SQLite driver: only the journal's storage and what
// wires it (engine, control/server, cmd) may link it.
const sqlite = "github.com/mattn/go-sqlite3"

// Layering is interlock's layering, as DESIGN.md draws it: the data path
// runs bpf → redirector → engine → inspect → policy/approvals → journal,
// and a shared vocabulary (model) sits below everything.
//
// When a package moves, update its patterns here: a new folder falls
// under no rule until one names it.
var Layering = []Rule{
	{From: "model", Only: []string{}, Forbid: []string{sqlite},
		Why: "model is the shared vocabulary: it imports nothing of interlock's"},
	{From: "internal/...", Only: []string{"internal/...", "model"},
		Why: "internal helpers (atomicfile, accounts, textview, deptest, testkit) sit below the data path: they know only each other and model"},
	{From: "policy/cmdline", Only: []string{}, Why: "the command-line parser is a leaf"},
	{From: "inspect/postgres/sqlclass", Only: []string{"model"}, Forbid: []string{sqlite},
		Why: "the SQL classifier is PostgreSQL vocabulary the CLI and the handler share: it knows only model"},
	{From: "metrics", Only: []string{"model"}, Why: "metrics are counters fed through small interfaces"},
	{From: "config", Forbid: []string{"policy", "inspect/...", "journal/...", "engine", "control/...", "redirector/...", "bpf/...", "runner/...", "approvals/...", sqlite},
		Why: "config parses and checks the file; the parts it configures import it, not the reverse"},
	{From: "policy/...", Forbid: []string{"inspect/...", "journal/...", "redirector/...", "bpf/...", "engine", "control/...", "runner/...", "metrics", sqlite},
		Why: "policy is pure decisions: it knows nothing of the handlers, the kernel side or the journal's storage"},
	{From: "approvals/...", Forbid: []string{"inspect/...", "journal/...", "redirector/...", "bpf/...", "engine", "control/...", sqlite},
		Why: "the approvals broker sits beside policy, below the handlers"},
	{From: "inspect/...", Forbid: []string{"journal/...", "redirector/...", "bpf/...", "engine", "control/...", "runner/...", "metrics", sqlite},
		Why: "handlers write through model.Recorder and get the origin from the engine: they never see the journal's storage or the kernel side"},
	{From: "journal/...", Forbid: []string{"inspect/...", "policy/...", "approvals/...", "engine", "control/...", "redirector/...", "bpf/...", "runner/...", "config"},
		Why: "the journal records what it is given; it knows nothing above it"},
	{From: "redirector/...", Forbid: []string{"inspect/...", "policy/...", "journal/...", "engine", "control/...", "runner/...", sqlite},
		Why: "the redirector hands on (conn, Origin); it knows nothing after accept()"},
	{From: "engine", Forbid: []string{"control/...", "runner/..."},
		Why: "control and runner drive the engine, not the reverse"},
	{From: "control/controlapi", Only: []string{"model"}, Forbid: []string{sqlite},
		Why: "the control API's wire types are a leaf that client and server share"},
	{From: "control", Forbid: []string{"engine", "redirector/...", "bpf/...", "journal/...", "inspect/...", "policy/...", "approvals/...", "control/server", sqlite},
		Why: "the control client speaks control/controlapi only: a program that only talks to a daemon links no engine, kernel side or storage"},
	{From: "runner/...", Forbid: []string{"engine", "control/...", "journal/...", "inspect/...", "policy/...", sqlite},
		Why: "the runner places processes in cgroups; it knows nothing of sessions"},
	{From: "sessionview", Forbid: []string{"journal/...", "inspect/...", "engine", sqlite},
		Why: "sessionview renders records; it reads no storage"},
	{From: "asciicast", Only: []string{"model"}, Why: "asciicast is a format over the vocabulary"},
	{From: "hub/publish", Only: []string{"config", "policy/cmdline", "internal/...", "journal/evidence", "model"}, Forbid: []string{sqlite},
		Why: "the fleet checkpoint publisher knows its config and the evidence format; the hub's server and store drive it"},
	{From: "journal/evidence", Only: []string{"model"}, Forbid: []string{sqlite},
		Why: "the evidence format and the bundle verifier build without cgo or storage: an auditor's verifier needs only model"},
	{From: "ship", Forbid: []string{"inspect/...", "policy", "approvals/...", "engine", "control/...", "redirector/...", "bpf/...", "runner/...", "hub/server", "hub/store", "hub/publish"},
		Why: "the shipper reads the journal and speaks hub/hubapi: it knows nothing of the data path nor of the hub's side"},
	{From: "identity/argvredact", Only: []string{}, Why: "the command-line redactor is a leaf that identity, the runner's CLI and the control server share"},
	{From: "identity", Only: []string{"identity/argvredact", "internal/...", "model"}, Forbid: []string{sqlite},
		Why: "process identity reads /proc and the cgroup filesystem; it knows nothing of the programs, sessions or the journal"},
	{From: "identity/oidcjob", Only: []string{"config", "policy/cmdline", "internal/glob", "model"}, Forbid: []string{sqlite},
		Why: "the ID token verifier knows its config and the vocabulary; the engine hands it to the resolver through identity's interface"},
	{From: "hub/hubapi", Only: []string{"model"}, Forbid: []string{sqlite},
		Why: "the hub's wire vocabulary is a leaf that the shipper, the hub and a verifier share"},
	{From: "hub/store", Only: []string{"hub/hubapi", "journal/evidence", "model"}, Forbid: []string{sqlite},
		Why: "the hub's store keeps evidence (and the held requests and decisions of the wire) in PostgreSQL in the evidence format; it links no journal storage (cgo)"},
	{From: "hub/idclaims", Only: []string{"hub/hubapi", "model"}, Forbid: []string{sqlite},
		Why: "who an ID token names is read one way for the approver API and the console alike"},
	{From: "hub/decision", Only: []string{"hub/hubapi", "model"}, Forbid: []string{sqlite},
		Why: "the signed decision's format is a leaf that the hub signs with and the host verifies with"},
	{From: "hub/server", Only: []string{"hub/hubapi", "hub/store", "hub/decision", "hub/idclaims", "journal/evidence", "model", "internal/..."}, Forbid: []string{sqlite},
		Why: "the hub checks and cosigns in the evidence format and keeps what it accepts in hub/store; it links no journal storage (cgo) and no host-side package"},
	{From: "hub/console", Only: []string{"hub/hubapi", "hub/idclaims", "hub/store", "journal/evidence", "model", "internal/...", "asciicast", "sessionview"}, Forbid: []string{sqlite},
		Why: "the console reads the hub's store and renders it with the views the CLI uses; it asks the hub's approvals through its own interface, not hub/server"},
	{From: "console/...", Forbid: []string{"inspect/...", "engine", "control/...", "redirector/...", "bpf/...", "runner/...", "hub/server", "ship"},
		Why: "a host's console reads its journal and its broker's queue and renders them with hub/console (the hub's store only for its types): it knows nothing of the data path, the kernel side, the shipper or the hub's server"},
}

// stdOnly lists the packages that, besides the interlock packages their
// rule allows, import only the standard library.
var stdOnly = map[string]string{
	"control/controlapi": "the control API's wire types need only encoding/json's vocabulary",
	"hub/hubapi":         "the hub's wire types need only encoding/json's vocabulary",
}

// onlyImporters lists, for a package, the only packages that may import
// it directly.
var onlyImporters = map[string][]string{
	// DESIGN.md: redirector is the only package that knows bpf.
	"bpf": {"redirector/..."},
	// Test harnesses and benchmarks never reach the product.
	"test/...": {"test/..."},
}

// isStd says whether path is the standard library's: its first element
// has no dot.
func isStd(path string) bool {
	return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
}

func moduleDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

func checkAll(g Graph) []string {
	var out []string
	for _, v := range Check(g, Layering) {
		out = append(out, v.String())
	}
	for _, path := range sortedKeys(g) {
		for pattern, why := range stdOnly {
			if !Match(pattern, path) {
				continue
			}
			for _, dep := range g[path].Deps {
				if !inModule(dep) && !isStd(dep) {
					out = append(out, rel(path)+" depends on "+dep+", not the standard library: "+why)
				}
			}
		}
	}
	for target, allowed := range onlyImporters {
		for _, path := range sortedKeys(g) {
			p := g[path]
			for _, imp := range p.Imports {
				if !Match(target, imp) || Match(target, path) {
					continue
				}
				ok := false
				for _, a := range allowed {
					ok = ok || Match(a, path)
				}
				if !ok {
					out = append(out, rel(path)+" imports "+rel(imp)+": only "+strings.Join(allowed, ", ")+" may")
				}
			}
		}
	}
	return out
}

// TestLayering checks the module's real import graph against Layering.
func TestLayering(t *testing.T) {
	g, err := Load(moduleDir(t), "", "./...")
	if err != nil {
		t.Fatal(err)
	}
	if len(g) < 20 || g[Module+"/model"] == nil || g[Module+"/policy"] == nil {
		t.Fatalf("go list found %d packages and not model and policy: the graph did not load", len(g))
	}
	for _, v := range checkAll(g) {
		t.Error(v)
	}
}

// TestLayeringCatchesAForbiddenImport adds, through a go list overlay, a
// file with a forbidden import to a package: the real check must report
// the import and what it drags in (SQLite through the journal, the kernel
// side through the engine).
func TestLayeringCatchesAForbiddenImport(t *testing.T) {
	for _, c := range []struct {
		dir, pkg string
		imports  []string
		want     []string
	}{
		{"policy", "policy", []string{Module + "/journal"},
			[]string{"policy imports journal: policy is pure decisions", "policy depends (through journal) on " + sqlite}},
		{"control", "control", []string{Module + "/engine"},
			[]string{"control imports engine: the control client", "control depends (through engine) on redirector: the control client", "control depends (through engine) on " + sqlite}},
		{"control/controlapi", "controlapi", []string{Module + "/approvals", "github.com/google/uuid"},
			[]string{"control/controlapi imports approvals: the control API's wire types are a leaf", "control/controlapi depends on github.com/google/uuid, not the standard library"}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			got := strings.Join(checkAll(loadWith(t, c.dir, c.pkg, c.imports)), "\n")
			for _, want := range c.want {
				if !strings.Contains(got, want) {
					t.Errorf("violations do not include %q:\n%s", want, got)
				}
			}
		})
	}
}

// loadWith loads the graph of dir's package with one more file, added
// through a go list overlay, that imports imports.
func loadWith(t *testing.T, dir, pkg string, imports []string) Graph {
	t.Helper()
	mod := moduleDir(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "forbidden.go")
	var b strings.Builder
	b.WriteString("package " + pkg + "\n\n")
	for _, imp := range imports {
		b.WriteString("import _ " + strconv.Quote(imp) + "\n")
	}
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{
		filepath.Join(mod, dir, "zz_forbidden_deptest.go"): src,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := Load(mod, ov, "./"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestCheck: the rules' matching, on a made-up graph.
func TestCheck(t *testing.T) {
	m := func(p string) string { return Module + "/" + p }
	g := Graph{
		m("model"):             {ImportPath: m("model")},
		m("internal/textview"): {ImportPath: m("internal/textview"), Imports: []string{m("policy")}, Deps: []string{m("policy"), m("model")}},
		m("policy"):            {ImportPath: m("policy"), Imports: []string{m("model")}, Deps: []string{m("model")}},
		m("inspect/x"):         {ImportPath: m("inspect/x"), Imports: []string{m("journalish")}, Deps: []string{m("journal/format"), m("journalish")}},
		m("journalish"): {ImportPath: m("journalish"), Imports: []string{m("journal/format")},
			Deps: []string{m("journal/format")}},
		m("journal/format"): {ImportPath: m("journal/format")},
		m("other"):          {ImportPath: m("other"), Imports: []string{m("bpf")}, Deps: []string{m("bpf")}},
		m("bpf"):            {ImportPath: m("bpf")},
	}
	got := checkAll(g)
	want := []string{
		"inspect/x depends (through journalish) on journal/format: handlers write through model.Recorder",
		"internal/textview imports policy: internal helpers",
		"other imports bpf: only redirector/... may",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		found := false
		for _, v := range got {
			found = found || strings.HasPrefix(v, w)
		}
		if !found {
			t.Errorf("no violation %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}

	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"policy", m("policy"), true},
		{"policy", m("policy/cmdline"), false},
		{"policy/...", m("policy/cmdline"), true},
		{"policy/...", m("policyx"), false},
		{"internal/...", m("internal/atomicfile"), true},
		{sqlite, sqlite, true},
		{sqlite, m("model"), false},
	} {
		if got := Match(c.pattern, c.path); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}
