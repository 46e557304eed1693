package export

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// BenchmarkVerifyBundle measures the offline verifier on the bundle of a
// journal of 100,000 entries: statements, their results and terminal
// output with payloads, the mix of make bench-journal (which runs it at a
// million entries and reports CPU time: journalbench -bundle).
func BenchmarkVerifyBundle(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "journal.db")
	j, err := journal.Open(context.Background(), journal.Options{Path: path, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	for i := range n {
		session := fmt.Sprintf("sess-%06d", i/100)
		switch {
		case i%10 == 5:
			j.Post(model.Record{Kind: model.KindSSHIO, Session: session, Data: model.SSHIO{Stream: "o", OffsetNS: int64(i), Bytes: 64},
				Payload: []byte("total 48\ndrwxr-xr-x  2 deploy deploy 4096 Mar  1 12:00 releases\n")})
		case i%2 == 0:
			j.Post(model.Record{Kind: model.KindPGStatement, Session: session, Data: model.PGStatement{
				SQL: "SELECT id, name, email FROM accounts WHERE id = $1", Protocol: "extended", Kinds: []string{"select"},
				Tables: []string{"accounts"}, ReadOnly: true, Decision: model.Decision{Action: model.Allow, Rule: "ci-read"}, StartNS: int64(i)}})
		default:
			j.Post(model.Record{Kind: model.KindPGResult, Session: session, Data: model.PGResult{Statement: uint64(i), Tag: "SELECT 1", Rows: 1}})
		}
		for st := j.Stats(); st.Posted-st.PostWritten-st.PostLost > journal.DefaultPostQueue/2; st = j.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	signer, err := journal.LoadSigner(filepath.Join(dir, journal.KeyFile))
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "bundle.tar.gz")
	if _, err := Bundle(context.Background(), out, Options{Journal: path, Signer: signer}); err != nil {
		b.Fatal(err)
	}
	var entries uint64
	for b.Loop() {
		rep, err := evidence.VerifyBundle(context.Background(), out, evidence.BundleOptions{PublicKey: signer.Verifier()})
		if err != nil || !rep.OK {
			b.Fatal(rep, err)
		}
		entries += rep.Counts.Entries
	}
	b.ReportMetric(float64(entries)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(entries), "ns/entry")
}
