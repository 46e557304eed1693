// Package deptest keeps interlock's import graph honest, in the manner of
// tailscale's tstest/deptest: it loads the graph with `go list` and checks
// it against layering rules, so an import that breaks the layering fails
// a test instead of waiting for a reviewer to notice.
//
// Rules name packages by path relative to the module ("policy",
// "inspect/..."), so they survive packages being added below a folder.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Module is interlock's module path.
const Module = "github.com/interlock/interlock"

// Package is one package of the graph, as `go list -json` gives it.
type Package struct {
	ImportPath string
	// Imports are its direct imports; Deps every package it depends on.
	Imports, Deps []string
	// CgoFiles are its cgo files (non-empty: the package needs cgo).
	CgoFiles []string
}

// Graph maps an import path to its package.
type Graph map[string]*Package

// Rule says what the packages matching From may not depend on.
type Rule struct {
	// From matches the packages the rule applies to: a path relative to
	// the module ("model"), "x/..." for x and everything below it, or a
	// full import path outside the module.
	From string
	// Forbid lists patterns (as From) of packages they may not depend on,
	// directly or through others.
	Forbid []string
	// Only, when set, is the complete list of interlock packages they may
	// depend on: a leaf has Only: []string{} (no interlock package), and
	// a vocabulary package Only: []string{"model"}.
	Only []string
	// Why is the reason, shown with a violation.
	Why string
}

// Violation is one dependency a rule forbids.
type Violation struct {
	From, Dep string
	// Via is the direct import of From that leads to Dep ("" when From
	// imports Dep itself).
	Via  string
	Rule Rule
}

func (v Violation) String() string {
	how := "imports"
	if v.Via != "" {
		how = "depends (through " + rel(v.Via) + ") on"
	}
	return fmt.Sprintf("%s %s %s: %s", rel(v.From), how, rel(v.Dep), v.Rule.Why)
}

// Load runs `go list -deps -json` on patterns in dir (with an overlay
// file when overlay is not "") and returns the graph.
func Load(dir, overlay string, patterns ...string) (Graph, error) {
	args := []string{"list", "-e", "-deps", "-json=ImportPath,Imports,Deps,CgoFiles"}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.Command("go", append(args, patterns...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("deptest: go list: %w: %s", err, stderr.Bytes())
	}
	g := Graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("deptest: decode go list output: %w", err)
		}
		g[p.ImportPath] = &p
	}
	return g, nil
}

// Check returns every dependency of g's interlock packages that a rule
// forbids, sorted.
func Check(g Graph, rules []Rule) []Violation {
	var out []Violation
	for _, path := range sortedKeys(g) {
		p := g[path]
		for _, r := range rules {
			if !Match(r.From, path) {
				continue
			}
			for _, dep := range p.Deps {
				if !forbidden(r, dep) {
					continue
				}
				out = append(out, Violation{From: path, Dep: dep, Via: via(g, p, dep), Rule: r})
			}
		}
	}
	return out
}

func forbidden(r Rule, dep string) bool {
	for _, f := range r.Forbid {
		if Match(f, dep) {
			return true
		}
	}
	if r.Only != nil && inModule(dep) {
		for _, ok := range r.Only {
			if Match(ok, dep) {
				return false
			}
		}
		return true
	}
	return false
}

// via names the direct import of p through which it reaches dep.
func via(g Graph, p *Package, dep string) string {
	if slices.Contains(p.Imports, dep) {
		return ""
	}
	for _, imp := range p.Imports {
		if q := g[imp]; q != nil && slices.Contains(q.Deps, dep) {
			return imp
		}
	}
	return "?"
}

// Match says whether the import path matches pattern (see Rule.From).
func Match(pattern, path string) bool {
	full := pattern
	if !strings.Contains(strings.SplitN(pattern, "/", 2)[0], ".") {
		full = Module + "/" + pattern
	}
	if base, ok := strings.CutSuffix(full, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == full
}

func inModule(path string) bool { return path == Module || strings.HasPrefix(path, Module+"/") }

func rel(path string) string {
	if r, ok := strings.CutPrefix(path, Module+"/"); ok {
		return r
	}
	return path
}

func sortedKeys(g Graph) []string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
