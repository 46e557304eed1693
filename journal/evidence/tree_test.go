package evidence

import (
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// CompactRange gives exactly what tlog.StoredHashes and tlog.TreeHash
// give, for every size up to 300, and frontiers read back rebuild it.
func TestCompactRangeMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var cr CompactRange
	var buf []tlog.Hash
	for n := int64(0); n < 300; n++ {
		data := []byte{byte(n), byte(n >> 8)}
		want, err := tlog.StoredHashes(n, data, reader)
		if err != nil {
			t.Fatal(err)
		}
		buf = cr.AddStored(tlog.RecordHash(data), buf)
		if len(buf) != len(want) {
			t.Fatalf("leaf %d: %d stored hashes, tlog %d", n, len(buf), len(want))
		}
		for i := range want {
			if buf[i] != want[i] {
				t.Fatalf("leaf %d: stored hash %d differs from tlog", n, i)
			}
		}
		stored = append(stored, want...)
		root, err := tlog.TreeHash(n+1, reader)
		if err != nil || cr.Root() != root {
			t.Fatalf("size %d: root differs from tlog.TreeHash (%v)", n+1, err)
		}
		front, err := reader.ReadHashes(FrontierIndexes(n + 1))
		if err != nil {
			t.Fatal(err)
		}
		again, err := NewCompactRange(n+1, front)
		if err != nil || again.Root() != root {
			t.Fatalf("size %d: frontier does not rebuild the root (%v)", n+1, err)
		}
	}
}
