package export

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
)

// bundleTamperCases is how many single-byte changes the bundle suite makes.
const bundleTamperCases = 10000

// copyAlone copies the bundle and the public key into an empty directory:
// no database, no config, no state directory.
func copyAlone(t testing.TB, bundle string, f *fixture) (string, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(f.dir, journal.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "evidence.tar.gz")
	os.WriteFile(dst, b, 0o600)
	os.WriteFile(filepath.Join(dir, "journal.pub"), pub, 0o600)
	return dst, filepath.Join(dir, "journal.pub")
}

func verifyWithPub(t testing.TB, bundle, pub string, ext ...evidence.ExternalCheckpoint) evidence.BundleReport {
	t.Helper()
	v, _, err := evidence.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.VerifyBundle(context.Background(), bundle, evidence.BundleOptions{PublicKey: v, External: ext})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A bundle copied where there is nothing but it and the public key
// verifies; it opens with the standard tools (gzip, tar) and holds what
// an auditor needs, every view escaped.
func TestBundleVerifiesWithThePublicKeyAlone(t *testing.T) {
	f := newFixture(t, 3)
	out, m := f.export(t, journal.Selection{})
	bundle, pub := copyAlone(t, out, f)
	rep := verifyWithPub(t, bundle, pub)
	if !rep.OK || rep.KeyFromBundle || rep.FirstSeq != 1 || rep.LastSeq != m.TreeSize || rep.Counts.Entries != m.LastSeq {
		t.Fatalf("report %+v", rep)
	}
	files := testkit.ReadTarGz(t, bundle)
	for _, name := range []string{evidence.FileManifest, evidence.FilePublicKey, evidence.FileCheckpoints, evidence.FileProofs, evidence.FileLeaves, evidence.FileEntries, evidence.FilePayloads, evidence.FileStatements, evidence.FileApprovals, "sessions/ssh-01.cast", evidence.FileSummary} {
		if _, ok := files[name]; !ok {
			t.Errorf("bundle lacks %s", name)
		}
	}
	// entries.jsonl holds the journal's bytes verbatim.
	var want bytes.Buffer
	journal.Entries(context.Background(), f.path, 1, func(e journal.Entry) error {
		want.Write(e.Body)
		want.WriteByte('\n')
		return nil
	})
	if !bytes.Equal(files[evidence.FileEntries], want.Bytes()) {
		t.Error("entries.jsonl is not the journal's bodies verbatim")
	}
	// The manifest's hashes are the files'.
	for _, mf := range m.Files {
		sum := sha256.Sum256(files[mf.Name])
		if hex.EncodeToString(sum[:]) != mf.SHA256 {
			t.Errorf("manifest hash of %s is wrong", mf.Name)
		}
	}
	stmts, err := csv.NewReader(bytes.NewReader(files[evidence.FileStatements])).ReadAll()
	if err != nil || len(stmts) != 1+6 {
		t.Fatalf("statements.csv: %d rows, %v", len(stmts), err)
	}
	if stmts[1][3] != "SELECT email FROM users WHERE id = $1" || stmts[1][12] != "SELECT 1" || stmts[1][11] != "yes" || stmts[2][3] != "'=DROP TABLE users <script>" || stmts[2][8] != "deny" {
		t.Errorf("statements.csv rows:\n%q\n%q", stmts[1], stmts[2])
	}
	// Each statement carries its session's principals; pg-00's statements
	// are rows 1 and 2, pg-01's 3 and 4, pg-02's 5 and 6.
	for row, want := range map[int][3]string{
		1: {"alice (login uid 1000, session 3), alice → root via sudo", "", "claude (matched by exe, pid 80 /usr/bin/claude)"},
		3: {"", "acme/billing@refs/heads/main (verified)", ""},
		6: {"", `"=acme/x (verified)@main" (claimed), token refused: "token signature invalid"`, ""},
	} {
		if got := [3]string(stmts[row][18:21]); got != want {
			t.Errorf("statements.csv row %d principals %q, want %q", row, got, want)
		}
	}
	appr, err := csv.NewReader(bytes.NewReader(files[evidence.FileApprovals])).ReadAll()
	if err != nil || len(appr) != 1+6 || appr[2][5] != "deny" || appr[1][9] != "drop_table" {
		t.Fatalf("approvals.csv: %q %v", appr, err)
	}
	if appr[0][19] != "who_human" || appr[1][19] != stmts[1][18] || appr[1][21] != stmts[1][20] || appr[3][20] != stmts[3][19] {
		t.Errorf("approvals.csv principals of the requesters: %q", appr[:4])
	}
	html := string(files[evidence.FileSummary])
	for _, bad := range []string{"<script>", "src=", "href=\"http", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("summary.html contains %q", bad)
		}
	}
	for _, good := range []string{"&lt;script&gt;", "Denials (6)", "Approvals (6)", "Masking decisions (3)", "/usr/bin/psql", "runner.service", "pg-02", "ssh-01",
		"alice → root via sudo", `data-provenance="verified">verified<`, "token refused: token signature invalid", "<b>claude</b>",
		`<a class="mono" href="sessions/ssh-01.cast">sessions/ssh-01.cast</a>`} {
		if !strings.Contains(html, good) {
			t.Errorf("summary.html lacks %q", good)
		}
	}
	if !bytes.HasPrefix(files["sessions/ssh-01.cast"], []byte(`{"version":2`)) || !bytes.Contains(files["sessions/ssh-01.cast"], []byte(`line4`)) {
		t.Errorf("cast: %s", files["sessions/ssh-01.cast"])
	}
	// Without a key, the bundle's own is used, and the report says so.
	rep, err = evidence.VerifyBundle(context.Background(), bundle, evidence.BundleOptions{})
	if err != nil || !rep.OK || !rep.KeyFromBundle {
		t.Errorf("verify without a key: %+v %v", rep, err)
	}
	// Another key is refused.
	other, _ := journal.LoadOrCreateKey(t.TempDir())
	rep, _ = evidence.VerifyBundle(context.Background(), bundle, evidence.BundleOptions{PublicKey: other.Verifier()})
	if rep.OK || !strings.Contains(rep.Reason, "not the key you trust") {
		t.Errorf("verify with another key: %+v", rep)
	}
}

// A session's bundle holds that session's entries; the others in its
// range are there as leaf hashes only, and it still proves against the
// journal's newest checkpoint.
func TestSessionBundle(t *testing.T) {
	f := newFixture(t, 3)
	out, m := f.export(t, journal.Selection{Session: "pg-01"})
	bundle, pub := copyAlone(t, out, f)
	rep := verifyWithPub(t, bundle, pub)
	if !rep.OK || rep.Counts.Entries != 8 || rep.Counts.Omitted != 1 || m.TreeSize <= m.LastSeq {
		t.Fatalf("report %+v manifest %+v", rep, m)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(testkit.ReadTarGz(t, bundle)[evidence.FileEntries])), "\n") {
		if !strings.Contains(l, `"session":"pg-01"`) {
			t.Fatalf("entry of another session in the bundle: %s", l)
		}
	}
	// A session and a time window: what is in between becomes leaf hashes.
	out, _ = f.export(t, journal.Selection{Session: "pg-01", Since: f.base.Add(21e9), Until: f.base.Add(26e9)})
	bundle, _ = copyAlone(t, out, f)
	rep = verifyWithPub(t, bundle, pub)
	if !rep.OK || rep.Counts.Omitted != 1 || rep.Counts.Entries != 7 || rep.FirstSeq == 1 {
		t.Fatalf("time-window bundle: %+v", rep)
	}
}

// Bundle tamper suite: one byte changed anywhere in the file, 10,000
// times, is always caught, with a reason.
func TestBundleTamperSuite(t *testing.T) {
	f := newFixture(t, 2)
	out, _ := f.export(t, journal.Selection{})
	orig, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	v := f.signer.Verifier()
	var wg sync.WaitGroup
	var mu sync.Mutex
	reasons := map[string]int{}
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			path := filepath.Join(t.TempDir(), "b.tar.gz")
			b := make([]byte, len(orig))
			for i := w; i < bundleTamperCases && !t.Failed(); i += workers {
				copy(b, orig)
				pos := r.IntN(len(b))
				b[pos] ^= byte(r.IntN(255) + 1)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Error(err)
					return
				}
				rep, err := evidence.VerifyBundle(context.Background(), path, evidence.BundleOptions{PublicKey: v})
				if err != nil || rep.OK || rep.Reason == "" {
					t.Errorf("byte %d of %d changed: not detected: %+v %v", pos, len(b), rep, err)
					return
				}
				key := rep.Reason
				if i := strings.IndexAny(key, ":0123456789"); i > 0 {
					key = key[:i]
				}
				mu.Lock()
				reasons[key]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d single-byte changes, all detected; reasons: %v", bundleTamperCases, reasons)
}

// A forger without the key can rebuild a bundle with consistent manifest
// hashes but cannot make its content prove: deleted, inserted, swapped and
// cut entries are caught by the tree, before the seal is even looked at.
func TestBundleStructuralTampering(t *testing.T) {
	f := newFixture(t, 3)
	out, _ := f.export(t, journal.Selection{})
	files := testkit.ReadTarGz(t, out)
	lines := strings.SplitAfter(string(files[evidence.FileEntries]), "\n")
	lines = lines[:len(lines)-1]
	forger, _ := journal.LoadOrCreateKey(t.TempDir())
	edits := map[string]func([]string) []string{
		"delete":   func(l []string) []string { return append(append([]string{}, l[:5]...), l[6:]...) },
		"insert":   func(l []string) []string { return append(append(append([]string{}, l[:5]...), l[3]), l[5:]...) },
		"swap":     func(l []string) []string { c := append([]string{}, l...); c[4], c[9] = c[9], c[4]; return c },
		"truncate": func(l []string) []string { return l[:len(l)-4] },
		"edit": func(l []string) []string {
			c := append([]string{}, l...)
			c[1] = strings.Replace(c[1], "psql", "psqx", 1)
			return c
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			forged := repack(t, files, strings.Join(edit(lines), ""), forger)
			rep, err := evidence.VerifyBundle(context.Background(), forged, evidence.BundleOptions{PublicKey: f.signer.Verifier()})
			if err != nil || rep.OK {
				t.Fatalf("not detected: %+v %v", rep, err)
			}
			if strings.Contains(rep.Reason, "seal") || rep.File == "" {
				t.Fatalf("caught only by the seal, not by its content: %+v", rep)
			}
			t.Logf("%s: %s: %s", name, rep.File, rep.Reason)
		})
	}
	// A checkpoint the auditor holds that covers more than the bundle's
	// newest shows the journal was cut before the export.
	j, err := journal.Open(context.Background(), journal.Options{Path: f.path, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	j.Append(context.Background(), recordForTest(), 1)
	j.Close()
	note, _ := os.ReadFile(journal.CheckpointPath(f.path))
	rep, _ := evidence.VerifyBundle(context.Background(), out, evidence.BundleOptions{PublicKey: f.signer.Verifier(), External: []evidence.ExternalCheckpoint{{Name: "auditor.cp", Note: note}}})
	if rep.OK || !strings.Contains(rep.Reason, "cut before this export") {
		t.Fatalf("newer external checkpoint: %+v", rep)
	}
}

// repack writes a bundle with entries.jsonl replaced and the manifest's
// hashes and counts made consistent, sealed with the forger's key.
func repack(t *testing.T, files map[string][]byte, entries string, forger *journal.Signer) string {
	t.Helper()
	return rewriteBundle(t, files, func(m *evidence.Manifest, files map[string][]byte) {
		files[evidence.FileEntries] = []byte(entries)
		m.Counts.Entries = uint64(strings.Count(entries, "\n"))
	}, func(sw *evidence.SealWriter, of *os.File) error { return sw.Finish(of, forger) })
}

// rewriteBundle rewrites a bundle's members with edit, makes the
// manifest's hashes and sizes agree, and writes it with finish (sealed
// with some key, or unsealed).
func rewriteBundle(t *testing.T, files map[string][]byte, edit func(*evidence.Manifest, map[string][]byte),
	finish func(*evidence.SealWriter, *os.File) error) string {
	t.Helper()
	var m evidence.Manifest
	if err := json.Unmarshal(files[evidence.FileManifest], &m); err != nil {
		t.Fatal(err)
	}
	files = maps.Clone(files)
	edit(&m, files)
	for i, mf := range m.Files {
		sum := sha256.Sum256(files[mf.Name])
		m.Files[i].SHA256, m.Files[i].Size = hex.EncodeToString(sum[:]), int64(len(files[mf.Name]))
	}
	manifest, _ := json.MarshalIndent(m, "", " ")
	dir := t.TempDir()
	sw, err := evidence.NewSealWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(sw)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(b)), Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		tw.Write(b)
	}
	put(evidence.FileManifest, append(manifest, '\n'))
	for _, mf := range m.Files {
		put(mf.Name, files[mf.Name])
	}
	tw.Close()
	path := filepath.Join(dir, "forged.tar.gz")
	of, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := finish(sw, of); err != nil {
		t.Fatal(err)
	}
	of.Close()
	return path
}
