package journal

import (
	"context"
	"testing"

	"github.com/interlock/interlock/model"
)

// BenchmarkAppend measures one record's cost with many sessions appending
// at once; group commit is what makes Synced affordable.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name     string
		d        model.Durability
		sessions int // goroutines per GOMAXPROCS; 0 = one caller in all
	}{
		{"Committed", model.Committed, 8},
		{"Synced", model.Synced, 8},
		// One caller alone: the latency a lone statement waits for.
		{"Committed/serial", model.Committed, 0},
		{"Synced/serial", model.Synced, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			j := openT(b, Options{Path: tempPath(b)})
			rec := model.Record{Kind: "pg.statement", Session: "0123456789abcdef", Data: map[string]any{
				"sql": "SELECT id, name FROM accounts WHERE id = $1", "params": []string{"42"}, "rows": 1, "duration_ns": 183000,
			}}
			b.ReportAllocs()
			b.ResetTimer()
			if c.sessions == 0 {
				for range b.N {
					if _, err := j.Append(context.Background(), rec, c.d); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(c.sessions)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := j.Append(context.Background(), rec, c.d); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			st := j.Stats()
			if st.Batches > 0 {
				b.ReportMetric(float64(st.Appends)/float64(st.Batches), "records/batch")
				b.ReportMetric(float64(st.Appends)/float64(max(st.FsyncBatches+st.IdleSyncs, 1)), "records/fsync")
			}
		})
	}
}
