package journal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

// BenchmarkPostSessions measures the batched path as journalbench does:
// eight goroutines post the records of sessions of 100 records each,
// throttled to half the queue so that nothing is lost even where Post does
// not wait.
func BenchmarkPostSessions(b *testing.B) {
	j := openT(b, Options{Path: tempPath(b)})
	payload := []byte("total 48\ndrwxr-xr-x  2 deploy deploy 4096 Mar  1 12:00 releases\n")
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				for {
					st := j.Stats()
					if st.Posted-st.PostWritten-st.PostLost < DefaultPostQueue/2 {
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				j.Post(model.Record{Kind: model.KindSSHIO, Session: fmt.Sprintf("sess-%06d", i/100),
					Data: model.SSHIO{Stream: "o", OffsetNS: int64(i), Bytes: len(payload)}, Payload: payload})
			}
		}()
	}
	wg.Wait()
	for st := j.Stats(); st.PostWritten+st.PostLost < uint64(b.N); st = j.Stats() {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if st := j.Stats(); st.PostLost != 0 {
		b.Fatalf("%d lost", st.PostLost)
	}
}
