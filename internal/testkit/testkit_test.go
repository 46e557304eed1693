package testkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

func TestJournalKeepsRecordsInOrder(t *testing.T) {
	j := &Journal{}
	ctx := context.Background()
	if seq, err := j.Append(ctx, model.Record{Kind: "a", Session: "s1", Data: map[string]int{"n": 1}}, model.Synced); err != nil || seq != 1 {
		t.Fatalf("first Append: %d, %v", seq, err)
	}
	j.Post(model.Record{Kind: "b", Session: "s2", Data: map[string]int{"n": 2}})
	if seq, err := j.Append(ctx, model.Record{Kind: "a", Session: "s2", Data: map[string]int{"n": 3}}, model.Committed); err != nil || seq != 3 {
		t.Fatalf("third Append: %d, %v", seq, err)
	}
	if got := j.Kinds(); !slices.Equal(got, []string{"a", "b", "a"}) {
		t.Errorf("Kinds = %v", got)
	}
	if got := j.OfKind("a"); len(got) != 2 || got[0].Session != "s1" || got[1].Session != "s2" {
		t.Errorf("OfKind(a) = %+v", got)
	}
	if got := j.OfSession("s2"); len(got) != 2 || got[0].Kind != "b" || got[1].Kind != "a" {
		t.Errorf("OfSession(s2) = %+v", got)
	}
	es := j.Entries()
	if len(es) != 3 || es[1].Seq != 2 || es[0].Durability != model.Synced || es[1].Durability != model.Committed {
		t.Errorf("Entries = %+v", es)
	}
	if got := Data[struct{ N int }](j, "a"); len(got) != 2 || got[0].N != 1 || got[1].N != 3 {
		t.Errorf("Data = %+v", got)
	}
	first := func(model.Record) bool { return true }
	if !j.Synced("a", first) {
		t.Error("the first a record was appended Synced")
	}
	if j.Synced("b", first) || j.Synced("none", first) {
		t.Error("Synced is true for a Committed record or a missing kind")
	}
	if !j.Synced("a", func(r model.Record) bool { return r.Session == "s1" }) || j.Synced("a", func(r model.Record) bool { return r.Session == "s2" }) {
		t.Error("Synced does not follow the match")
	}
	// Readers return copies: changing one changes nothing in the journal.
	es[0].Kind = "changed"
	if j.Records()[0].Kind != "a" {
		t.Error("Entries shares its slice with the journal")
	}
}

func TestJournalFailsAsTold(t *testing.T) {
	j := &Journal{}
	broken := errors.New("disk full")
	j.Fail(broken)
	if _, err := j.Append(context.Background(), model.Record{Kind: "a"}, model.Synced); !errors.Is(err, broken) {
		t.Errorf("Append after Fail: %v", err)
	}
	j.Post(model.Record{Kind: "a"})
	if n := len(j.Records()); n != 0 {
		t.Errorf("a failed journal kept %d records", n)
	}
	j.Fail(nil)
	if seq, err := j.Append(context.Background(), model.Record{Kind: "a"}, model.Synced); err != nil || seq != 1 {
		t.Errorf("Append after Fail(nil): %d, %v", seq, err)
	}
}

func TestJournalRefusesDataJSONCannotHold(t *testing.T) {
	j := &Journal{}
	if _, err := j.Append(context.Background(), model.Record{Kind: "a", Data: math.NaN()}, model.Synced); err == nil {
		t.Error("a NaN was journaled")
	}
	if _, err := j.Append(context.Background(), model.Record{Kind: "a", Data: make(chan int)}, model.Synced); err == nil {
		t.Error("a channel was journaled")
	}
	if n := len(j.Records()); n != 0 {
		t.Errorf("kept %d refused records", n)
	}
}

// TestJournalConcurrent is meant for -race: writers and readers at once.
func TestJournalConcurrent(t *testing.T) {
	j := &Journal{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				j.Post(model.Record{Kind: "k", Session: fmt.Sprint(w), Data: i})
			}
		})
		wg.Go(func() {
			for range 100 {
				j.Kinds()
				Data[int](j, "k")
				j.Synced("k", func(model.Record) bool { return true })
			}
		})
	}
	wg.Wait()
	es := j.Entries()
	if len(es) != 400 {
		t.Fatalf("%d entries, want 400", len(es))
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	if n := len(j.OfSession("3")); n != 100 {
		t.Errorf("session 3 has %d records, want 100", n)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if s := b.String(); len(s) != 800 || strings.Count(s, "ab") != 400 {
		t.Errorf("%d bytes, %d writes whole", len(s), strings.Count(s, "ab"))
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t, "127.0.0.1")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d was not free: %v", port, err)
	}
	ln.Close()
	if _, err := PickPort("192.0.2.1"); err == nil {
		t.Error("a port on an address of no interface")
	}
}

// fatalTB records a Fatal and stops the helper as testing's would.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(f)
}

// fails runs fn with a fatalTB and returns its message ("" when fn did
// not fail).
func fails(fn func(tb testing.TB)) (msg string) {
	f := &fatalTB{}
	defer func() {
		if r := recover(); r != nil && r != f {
			panic(r)
		}
		msg = f.msg
	}()
	fn(f)
	return ""
}

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, 5*time.Second, time.Millisecond, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times", n)
	}
	start := time.Now()
	msg := fails(func(tb testing.TB) {
		WaitFor(tb, 50*time.Millisecond, 5*time.Millisecond, func() bool { return false })
	})
	if !strings.Contains(msg, "not met within 50ms") {
		t.Errorf("WaitFor on a false condition: %q", msg)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("abcdef", 3); got != "…def" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("abc", 3); got != "abc" {
		t.Errorf("Tail of a short string = %q", got)
	}
}

func TestReadTarGz(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	want := map[string]string{"a.txt": "alpha", "dir/b.json": "{}", "empty": ""}
	for _, name := range []string{"a.txt", "dir/b.json", "empty"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(want[name]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(want[name]))
	}
	tw.Close()
	zw.Close()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got := ReadTarGz(t, path)
	if len(got) != len(want) {
		t.Errorf("%d files, want %d", len(got), len(want))
	}
	for name, w := range want {
		if string(got[name]) != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
	// Cut short, the archive is an error, not fewer files.
	if err := os.WriteFile(path, buf.Bytes()[:buf.Len()/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := fails(func(tb testing.TB) { ReadTarGz(tb, path) }); msg == "" {
		t.Error("a truncated archive read without error")
	}
}
