package evidence

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// The bundles in testdata were exported by interlock before the evidence
// format left package journal (commit 5152ee7). They must verify, to the
// same report, for as long as bundle version 1 is read: an auditor's old
// bundle does not stop verifying because interlock moved code around.
// This test runs with CGO_ENABLED=0, as an auditor's verifier builds.
func TestGoldenBundlesVerify(t *testing.T) {
	key, _, err := LoadVerifier(filepath.Join("testdata", "journal.pub"))
	if err != nil {
		t.Fatal(err)
	}
	const root = "711f5cd956ba786830a0a51eefcaf9e426eb451ab3c2209248c68747a855497d"
	for _, tc := range []struct {
		file                string
		first, last         uint64
		entries, payloads   uint64
		checkpoints, casts  uint64
		sessions, approvals uint64
	}{
		{"all.bundle.tar.gz", 1, 20, 20, 6, 2, 1, 2, 2},
		{"session.bundle.tar.gz", 10, 20, 11, 5, 1, 1, 1, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			rep, err := VerifyBundle(context.Background(), path, BundleOptions{PublicKey: key})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Counts
			if !rep.OK || rep.KeyFromBundle || rep.Key != "interlock@vm+b68a0df4" || rep.JournalID != "471873b5078348df02db186ee7e0c3a4" ||
				rep.FirstSeq != tc.first || rep.LastSeq != tc.last || rep.TreeSize != 20 || rep.TreeRoot != root ||
				c.Entries != tc.entries || c.Payloads != tc.payloads || c.Checkpoints != tc.checkpoints ||
				c.Casts != tc.casts || c.Sessions != tc.sessions || c.Approvals != tc.approvals {
				t.Fatalf("report differs from the one interlock gave when it exported the bundle: %+v", rep)
			}

			// One changed byte anywhere after the seal's header fails it.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []int{len(b) / 3, len(b) / 2, len(b) - 9} {
				bad := append([]byte(nil), b...)
				bad[at] ^= 0x01
				forged := filepath.Join(t.TempDir(), "forged.tar.gz")
				if err := os.WriteFile(forged, bad, 0o644); err != nil {
					t.Fatal(err)
				}
				rep, err := VerifyBundle(context.Background(), forged, BundleOptions{PublicKey: key})
				if err != nil || rep.OK || rep.Reason == "" {
					t.Fatalf("bundle with byte %d of %d flipped: %+v, %v", at, len(b), rep, err)
				}
			}
		})
	}
}

// A bundle checked against a key other than the one that signed it fails,
// naming both keys.
func TestGoldenBundleWrongKey(t *testing.T) {
	// The same name, another ed25519 key: only the key hash tells them apart.
	_, vkey, err := note.GenerateKey(rand.Reader, "interlock@vm")
	if err != nil {
		t.Fatal(err)
	}
	key, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyBundle(context.Background(), filepath.Join("testdata", "all.bundle.tar.gz"), BundleOptions{PublicKey: key})
	if err != nil || rep.OK || !strings.Contains(rep.Reason, "not the key you trust") {
		t.Fatalf("bundle under another key: %+v, %v", rep, err)
	}
}
