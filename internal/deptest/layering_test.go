package deptest

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sqlite is the cgo SQLite driver: only the journal's storage and what
// wires it (engine, control, cmd) may link it.
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
	{From: "runner/...", Forbid: []string{"engine", "control/...", "journal/...", "inspect/...", "policy/...", sqlite},
		Why: "the runner places processes in cgroups; it knows nothing of sessions"},
	{From: "sessionview", Forbid: []string{"journal/...", "inspect/...", "engine", sqlite},
		Why: "sessionview renders records; it reads no storage"},
	{From: "asciicast", Only: []string{"model"}, Why: "asciicast is a format over the vocabulary"},
	{From: "journal/evidence", Only: []string{"model"}, Forbid: []string{sqlite},
		Why: "the evidence format and the bundle verifier build without cgo or storage: an auditor's verifier needs only model"},
	{From: "identity", Only: []string{"internal/...", "model"}, Forbid: []string{sqlite},
		Why: "process identity reads /proc and the cgroup filesystem; it knows nothing of the programs, sessions or the journal"},
}

// onlyImporters lists, for a package, the only packages that may import
// it directly.
var onlyImporters = map[string][]string{
	// DESIGN.md: redirector is the only package that knows bpf.
	"bpf": {"redirector/..."},
	// Test harnesses and benchmarks never reach the product.
	"test/...": {"test/..."},
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
// file to policy that imports the journal (and so, through it, SQLite):
// the real check must report both.
func TestLayeringCatchesAForbiddenImport(t *testing.T) {
	dir := moduleDir(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "forbidden.go")
	if err := os.WriteFile(src, []byte("package policy\n\nimport _ \"github.com/interlock/interlock/journal\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{
		filepath.Join(dir, "policy", "zz_forbidden_deptest.go"): src,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := Load(dir, ov, "./policy/...")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(checkAll(g), "\n")
	for _, want := range []string{"policy imports journal: policy is pure decisions", "policy depends (through journal) on " + sqlite} {
		if !strings.Contains(got, want) {
			t.Errorf("violations do not include %q:\n%s", want, got)
		}
	}
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

// controlClientFiles are the control API's client side: they run in the
// CLI and in `interlock run`, and must not import the engine, whose types
// belong to the server.
const controlClientFiles = "../../control/*client*.go"

// TestControlClientImportsNoEngine checks the client files' own imports
// (the server shares their package and does import the engine).
func TestControlClientImportsNoEngine(t *testing.T) {
	files, err := filepath.Glob(controlClientFiles)
	if err != nil || len(files) == 0 {
		t.Fatalf("no control client files at %s: %v", controlClientFiles, err)
	}
	for _, f := range files {
		for _, imp := range fileImports(t, f) {
			if Match("engine/...", imp) || Match("inspect/...", imp) || Match("journal/...", imp) {
				t.Errorf("%s imports %s: the control client speaks the wire types only", f, rel(imp))
			}
		}
	}
}

func fileImports(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range f.Imports {
		p, err := strconv.Unquote(s.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
