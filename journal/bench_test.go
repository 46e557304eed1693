package journal

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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
				b.ReportMetric(float64(st.Appends)/float64(max(st.Fsyncs, 1)), "records/fsync")
			}
		})
	}
}

// BenchmarkPost measures the batched path: records posted as fast as the
// queue takes them, committed in large batches.
func BenchmarkPost(b *testing.B) {
	j := openT(b, Options{Path: tempPath(b)})
	rec := model.Record{Kind: model.KindSSHIO, Session: "0123456789abcdef", Data: model.SSHIO{Stream: "o", Bytes: 64},
		Payload: []byte("total 48\ndrwxr-xr-x  2 deploy deploy 4096 Mar  1 12:00 releases\n")}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for {
			st := j.Stats()
			if st.Posted-st.PostWritten-st.PostLost < DefaultPostQueue/2 {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		j.Post(rec)
	}
	for st := j.Stats(); st.PostWritten+st.PostLost < uint64(b.N); st = j.Stats() {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if st := j.Stats(); st.PostLost != 0 {
		b.Fatalf("%d lost", st.PostLost)
	}
}

// BenchmarkVerify measures Verify per entry on a journal of statements and
// output with payloads.
func BenchmarkVerify(b *testing.B) {
	path := tempPath(b)
	j := openT(b, Options{Path: path})
	const n = 100000
	for i := range n {
		if i%2 == 0 {
			j.Post(model.Record{Kind: model.KindPGStatement, Session: "0123456789abcdef", Data: map[string]any{
				"sql": "SELECT id, name FROM accounts WHERE id = $1", "kinds": []string{"select"}, "rows": 1, "duration_ns": 183000}})
		} else {
			j.Post(model.Record{Kind: model.KindSSHIO, Session: "0123456789abcdef", Data: model.SSHIO{Stream: "o", Bytes: 64},
				Payload: []byte("total 48\ndrwxr-xr-x  2 deploy deploy 4096 Mar  1 12:00 releases\n")})
		}
		for st := j.Stats(); st.Posted-st.PostWritten-st.PostLost > DefaultPostQueue/2; st = j.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		rep, err := Verify(context.Background(), path, nil)
		if err != nil || !rep.OK {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkAppendMixed measures what a Committed append (a read's record)
// waits for while other sessions append Synced ones (writes): with the
// fsync off the writer, only the commit.
func BenchmarkAppendMixed(b *testing.B) {
	j := openT(b, Options{Path: tempPath(b)})
	rec := model.Record{Kind: "pg.statement", Session: "0123456789abcdef", Data: map[string]any{"sql": "SELECT 1"}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := j.Append(context.Background(), rec, model.Synced); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	var lats []time.Duration
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if _, err := j.Append(context.Background(), rec, model.Committed); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lats = append(lats, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lats)
	if len(lats) > 0 {
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "committed-p50-µs")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "committed-p99-µs")
	}
}
