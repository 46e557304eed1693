// Command mkpkg builds interlock's .deb and .rpm with nfpm's library.
//
//	go run ./cmd/mkpkg -root .. -bin ../dist/build/interlock -version 1.2.3 -out ../dist
//
// It runs the binary's hidden `package-helper gendocs` for the completions
// and the man page (so they match the CLI in the package), assembles the
// maintainer scripts from packaging/scripts, works out the glibc the binary
// needs, fills those into packaging/nfpm.yaml and writes both packages.
package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

func main() {
	root := flag.String("root", ".", "repository root (paths in nfpm.yaml are relative to it)")
	bin := flag.String("bin", "", "the interlock binary to package (built for linux/amd64)")
	ver := flag.String("version", "", "package version, starting with a digit (e.g. 1.2.3 or 0.0.0~git20260101.abc1234)")
	out := flag.String("out", "dist", "directory for the packages")
	formats := flag.String("formats", "deb,rpm", "packagers to run")
	flag.Parse()
	if err := run(*root, *bin, *ver, *out, strings.Split(*formats, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

var versionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

func run(root, bin, ver, out string, formats []string) error {
	if bin == "" || ver == "" {
		return errors.New("-bin and -version are required")
	}
	if !versionRE.MatchString(ver) {
		return fmt.Errorf("version %q: must start with a digit and hold only letters, digits, '.', '+' and '~' (dpkg and rpm both accept that)", ver)
	}
	var err error
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	gen, err := os.MkdirTemp("", "mkpkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(gen)

	glibc, err := glibcNeeded(bin)
	if err != nil {
		return err
	}
	if err := genDocs(bin, gen); err != nil {
		return err
	}
	if err := genScripts("packaging/scripts", filepath.Join(gen, "scripts")); err != nil {
		return err
	}

	vars := map[string]string{"VERSION": ver, "BIN": bin, "GEN": gen, "GLIBC": glibc}
	raw, err := os.ReadFile("packaging/nfpm.yaml")
	if err != nil {
		return err
	}
	var missing []string
	expanded := os.Expand(string(raw), func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return fmt.Errorf("packaging/nfpm.yaml uses unknown variables %v", missing)
	}
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(expanded), func(k string) string { return "$" + k })
	if err != nil {
		return fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	for _, format := range formats {
		info, err := cfg.Get(format)
		if err != nil {
			return err
		}
		info = nfpm.WithDefaults(info)
		pkg, err := nfpm.Get(format)
		if err != nil {
			return err
		}
		target := filepath.Join(out, pkg.ConventionalFileName(info))
		f, err := os.Create(target)
		if err != nil {
			return err
		}
		info.Target = target
		if err := pkg.Package(info, f); err != nil {
			f.Close()
			os.Remove(target)
			return fmt.Errorf("%s: %w", format, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Println(target)
	}
	return nil
}

// genDocs asks the binary for its completions and man page (dated from
// SOURCE_DATE_EPOCH, which it reads itself, else today), and gzips the man
// page (reproducibly: no name, no time in the header).
func genDocs(bin, gen string) error {
	cmd := exec.Command(bin, "package-helper", "gendocs", gen)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s package-helper gendocs: %w", bin, err)
	}
	man := filepath.Join(gen, "man", "interlock.8")
	b, err := os.ReadFile(man)
	if err != nil {
		return err
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(man+".gz", z.Bytes(), 0o644)
}

// genScripts puts common.sh in place of the @COMMON@ line of each
// maintainer script: a script cannot source a file of the package, which
// may be half removed when it runs.
func genScripts(src, dst string) error {
	common, err := os.ReadFile(filepath.Join(src, "common.sh"))
	if err != nil {
		return err
	}
	for _, kind := range []string{"deb", "rpm"} {
		entries, err := os.ReadDir(filepath.Join(src, kind))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, kind), 0o755); err != nil {
			return err
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, kind, e.Name()))
			if err != nil {
				return err
			}
			if bytes.Count(b, []byte("@COMMON@\n")) != 1 {
				return fmt.Errorf("%s/%s: want one @COMMON@ line", kind, e.Name())
			}
			b = bytes.Replace(b, []byte("@COMMON@\n"), common, 1)
			if err := os.WriteFile(filepath.Join(dst, kind, e.Name()), b, 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// glibcNeeded returns the newest GLIBC_x.y symbol version the binary
// imports, which the packages then depend on.
func glibcNeeded(bin string) (string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", fmt.Errorf("%s is built for %s, the packages are amd64", bin, f.Machine)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		if errors.Is(err, elf.ErrNoSymbols) {
			return "2.17", nil // static: any glibc of this century
		}
		return "", err
	}
	best := [2]int{2, 17}
	for _, s := range syms {
		v, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok {
			continue
		}
		var maj, min int
		if _, err := fmt.Sscanf(v, "%d.%d", &maj, &min); err != nil {
			continue
		}
		if maj > best[0] || (maj == best[0] && min > best[1]) {
			best = [2]int{maj, min}
		}
	}
	return fmt.Sprintf("%d.%d", best[0], best[1]), nil
}
