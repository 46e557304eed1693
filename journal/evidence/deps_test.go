package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

// What an auditor's verifier must never link: SQLite storage, and with it
// cgo. The module's own storage packages are listed too, so that a
// shortcut through them fails here rather than in an auditor's build.
var forbiddenDeps = []string{
	"database/sql",
	"database/sql/driver",
	"github.com/mattn/go-sqlite3",
	"github.com/interlock/interlock/journal",
	"github.com/interlock/interlock/journal/export",
}

// The verifier's packages: this one and the standalone command.
var verifierPackages = []string{
	"github.com/interlock/interlock/journal/evidence",
	"github.com/interlock/interlock/cmd/interlock-verify",
}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	_, err := os.Stat(p)
	testenv.Require(t, "the go command (to list the verifier's dependencies)", err)
	return p
}

type listedPackage struct {
	ImportPath string
	Standard   bool
	CgoFiles   []string
	Imports    []string
}

// TestEvidenceNeedsNoCgo fails when the format package or the standalone
// verifier imports database/sql, SQLite, the journal's storage, or any
// package outside the standard library that uses cgo; and it builds the
// verifier with CGO_ENABLED=0. The dependencies are listed with cgo
// enabled, so a cgo package shows its cgo files even where it could also
// build without them. (The standard library's os/user and net use cgo when
// they may and pure Go otherwise, so they are allowed.)
func TestEvidenceNeedsNoCgo(t *testing.T) {
	goCmd := goTool(t)
	list := exec.Command(goCmd, append([]string{"list", "-deps", "-json=ImportPath,Standard,CgoFiles,Imports"}, verifierPackages...)...)
	list.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := map[string]bool{}
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen[p.ImportPath] = true
		for _, bad := range forbiddenDeps {
			if p.ImportPath == bad {
				t.Errorf("the verifier depends on %s: keep what needs it out of journal/evidence (find the import: go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/interlock-verify)", bad)
			}
		}
		if p.Standard {
			continue
		}
		if len(p.CgoFiles) > 0 {
			t.Errorf("%s uses cgo (%s); the verifier must build with CGO_ENABLED=0", p.ImportPath, strings.Join(p.CgoFiles, ", "))
		}
		for _, imp := range p.Imports {
			if imp == "C" {
				t.Errorf("%s imports \"C\"", p.ImportPath)
			}
		}
	}
	for _, want := range verifierPackages {
		if !seen[want] {
			t.Errorf("go list did not list %s", want)
		}
	}

	bin := filepath.Join(t.TempDir(), "interlock-verify")
	build := exec.Command(goCmd, "build", "-o", bin, verifierPackages[1])
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build %s: %v\n%s", verifierPackages[1], err, out)
	}
	info, err := exec.Command(goCmd, "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), "CGO_ENABLED=0") {
		t.Errorf("the verifier was not built without cgo:\n%s", info)
	}
}
