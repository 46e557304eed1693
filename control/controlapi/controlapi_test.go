package controlapi

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden")

// wireTypes are the bodies that cross the sockets. Tally is model's type;
// its keys are listed too because `status` shows it.
var wireTypes = []any{
	Status{}, HookStats{}, LiveSession{}, Tally{}, RunInfo{}, RunRequest{}, Pending{}, DecideRequest{},
}

// keys lists every JSON key of t's fields with its Go type, one a line.
func keys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "" || tag == "-" {
			out = append(out, fmt.Sprintf("%s.%s: no json tag", t.Name(), f.Name))
			continue
		}
		out = append(out, fmt.Sprintf("%s.%s %s", t.Name(), tag, f.Type))
	}
	return out
}

// TestWireKeys pins the JSON names and types of what crosses the sockets:
// scripts read them, and a daemon and an `interlock run` of different
// builds must understand each other. A deliberate change is made with
// -update and shows in review.
func TestWireKeys(t *testing.T) {
	var lines []string
	for _, v := range wireTypes {
		lines = append(lines, keys(reflect.TypeOf(v))...)
	}
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the wire's JSON keys changed (go test -update if meant):\n got:\n%s\nwant:\n%s", got, want)
	}
}

// TestWireTypesListed: every struct this package declares is in
// wireTypes, so a new body cannot skip the golden file.
func TestWireTypesListed(t *testing.T) {
	fset := token.NewFileSet()
	listed := map[string]bool{}
	for _, v := range wireTypes {
		listed[reflect.TypeOf(v).Name()] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				if _, isStruct := ts.Type.(*ast.StructType); isStruct && ts.Name.IsExported() {
					declared = append(declared, ts.Name.Name)
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no struct declarations: the test reads the wrong directory")
	}
	for _, name := range declared {
		if !listed[name] {
			t.Errorf("%s is not in wireTypes", name)
		}
	}
	if !slices.Contains(declared, "Status") {
		t.Errorf("Status not among the declared types %v", declared)
	}
}
