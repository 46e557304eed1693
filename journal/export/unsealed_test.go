package export

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
)

func (f *fixture) exportUnsealed(t testing.TB, sel journal.Selection) (string, *evidence.Manifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "unsealed.tar.gz")
	m, err := Bundle(context.Background(), out, Options{Journal: f.path, Selection: sel, Unsealed: true})
	if err != nil {
		t.Fatalf("Bundle: %v", err)
	}
	return out, m
}

func verifyUnsealed(t testing.TB, bundle string, f *fixture, allow bool) evidence.BundleReport {
	t.Helper()
	rep, err := evidence.VerifyBundle(context.Background(), bundle, evidence.BundleOptions{PublicKey: f.signer.Verifier(), AllowUnsealed: allow})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// An unsealed bundle (no key read) holds what a sealed one does and
// verifies with the public key alone, but only when the auditor accepts
// an unsealed bundle; the report says so, and what it leaves unproven.
func TestUnsealedBundle(t *testing.T) {
	f := newFixture(t, 2)
	if _, err := Bundle(context.Background(), filepath.Join(t.TempDir(), "x"), Options{Journal: f.path, Signer: f.signer, Unsealed: true}); err == nil {
		t.Fatal("a signer and Unsealed together were accepted")
	}
	sealed, _ := f.export(t, journal.Selection{})
	if rep := verifyWithPub(t, sealed, filepath.Join(f.dir, journal.PublicKeyFile)); !rep.OK || !rep.Sealed {
		t.Fatalf("sealed bundle: %+v", rep)
	}
	out, m := f.exportUnsealed(t, journal.Selection{})
	if m.FirstSeq != 1 || m.LastSeq != m.TreeSize {
		t.Fatalf("manifest %+v", m)
	}
	if a, b := testkit.ReadTarGz(t, sealed), testkit.ReadTarGz(t, out); len(a) != len(b) || string(a[evidence.FileEntries]) != string(b[evidence.FileEntries]) {
		t.Errorf("unsealed bundle holds other members than the sealed one: %d and %d", len(a), len(b))
	}
	rep := verifyUnsealed(t, out, f, false)
	if rep.OK || rep.Sealed || !strings.Contains(rep.Reason, "unsealed") || !strings.Contains(rep.Reason, "--allow-unsealed") {
		t.Fatalf("unsealed bundle without AllowUnsealed: %+v", rep)
	}
	rep = verifyUnsealed(t, out, f, true)
	if !rep.OK || rep.Sealed || rep.KeyFromBundle || rep.Counts.Entries != m.TreeSize || len(rep.Warnings) != 1 ||
		!strings.Contains(rep.Warnings[0], "summary.html") || strings.Contains(rep.Warnings[0], "selection") {
		t.Fatalf("unsealed bundle with AllowUnsealed: %+v", rep)
	}
	// Narrowed, it cannot prove it left no selected entry out.
	out, _ = f.exportUnsealed(t, journal.Selection{Session: "pg-01"})
	if rep := verifyUnsealed(t, out, f, true); !rep.OK || rep.Counts.Omitted == 0 || !strings.Contains(rep.Warnings[0], "every entry the selection matches") {
		t.Fatalf("unsealed session bundle: %+v", rep)
	}
	// Checkpoints under another key than the journal's are refused: an
	// auditor's export passes on none the journal's key did not sign.
	other, _ := journal.LoadOrCreateKey(t.TempDir())
	if rep, _ := evidence.VerifyBundle(context.Background(), out, evidence.BundleOptions{PublicKey: other.Verifier(), AllowUnsealed: true}); rep.OK {
		t.Fatalf("unsealed bundle under another key: %+v", rep)
	}
}

// One byte changed anywhere in an unsealed bundle is caught too: the
// digest covers what the seal would.
func TestUnsealedBundleTamper(t *testing.T) {
	f := newFixture(t, 2)
	out, _ := f.exportUnsealed(t, journal.Selection{})
	orig, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	for range bundleTamperCases / 10 {
		b := append([]byte(nil), orig...)
		pos := r.IntN(len(b))
		b[pos] ^= byte(r.IntN(255) + 1)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if rep := verifyUnsealed(t, path, f, true); rep.OK || rep.Reason == "" {
			t.Fatalf("byte %d of %d changed: not detected: %+v", pos, len(b), rep)
		}
	}
}

// What the checkpoints prove holds without the seal: changed entries fail
// on the tree; a whole-journal export cannot hide an entry as a leaf hash;
// and a sealed bundle rewritten as unsealed (its views changed) is refused
// unless the auditor accepts unsealed bundles, and then it says so.
func TestUnsealedForgeries(t *testing.T) {
	f := newFixture(t, 3)
	out, _ := f.exportUnsealed(t, journal.Selection{})
	files := testkit.ReadTarGz(t, out)
	lines := strings.SplitAfter(string(files[evidence.FileEntries]), "\n")
	lines = lines[:len(lines)-1]

	edited := append([]string(nil), lines...)
	edited[1] = strings.Replace(edited[1], "psql", "psqx", 1)
	rep := verifyUnsealed(t, repackUnsealed(t, files, func(m *evidence.Manifest, fs map[string][]byte) {
		fs[evidence.FileEntries] = []byte(strings.Join(edited, ""))
	}), f, true)
	if rep.OK || rep.File != evidence.FileEntries {
		t.Fatalf("edited entry: %+v", rep)
	}

	// An entry with no payload, hidden as its leaf hash.
	hide := -1
	for i, l := range lines {
		if i > 0 && !strings.Contains(l, `"payload"`) {
			hide = i
			break
		}
	}
	rep = verifyUnsealed(t, repackUnsealed(t, files, func(m *evidence.Manifest, fs map[string][]byte) {
		leaf := evidence.LeafHash([]byte(strings.TrimSuffix(lines[hide], "\n")))
		fs[evidence.FileLeaves] = leaf[:]
		fs[evidence.FileEntries] = []byte(strings.Join(append(append([]string(nil), lines[:hide]...), lines[hide+1:]...), ""))
		m.Counts.Entries--
		m.Counts.Omitted++
	}), f, true)
	if rep.OK || !strings.Contains(rep.Reason, "selects everything") {
		t.Fatalf("entry %d hidden as a leaf hash: %+v", hide+1, rep)
	}

	sealed, _ := f.export(t, journal.Selection{})
	downgraded := repackUnsealed(t, testkit.ReadTarGz(t, sealed), func(m *evidence.Manifest, fs map[string][]byte) {
		fs[evidence.FileSummary] = []byte("<p>nothing happened</p>\n")
	})
	if rep := verifyUnsealed(t, downgraded, f, false); rep.OK || !strings.Contains(rep.Reason, "unsealed") {
		t.Fatalf("sealed bundle rewritten unsealed: %+v", rep)
	}
	if rep := verifyUnsealed(t, downgraded, f, true); !rep.OK || rep.Sealed || !strings.Contains(strings.Join(rep.Warnings, " "), "exporter's word") {
		t.Fatalf("sealed bundle rewritten unsealed, accepted: %+v", rep)
	}
}

// repackUnsealed rewrites a bundle's members with edit, makes the
// manifest's hashes and sizes agree, and writes it unsealed: what anyone
// who may read the journal can do.
func repackUnsealed(t *testing.T, files map[string][]byte, edit func(*evidence.Manifest, map[string][]byte)) string {
	t.Helper()
	return rewriteBundle(t, files, edit, func(sw *evidence.SealWriter, of *os.File) error { return sw.FinishUnsealed(of) })
}
