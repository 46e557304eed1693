package journal

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

const catchUpChildEnv = "INTERLOCK_JOURNAL_CATCHUP_CHILD"

// catchUpRecords is how many records the child commits to its log.
const catchUpRecords = 5

// TestCatchUpChild is the writer process of the catch-up tests; it does
// nothing unless started by one. It commits catchUpRecords records (to
// its commit log: it writes alone) and prints the last one's number; in
// stream mode it goes on committing, printing each number as its Append
// returns, with the log rewound every few KiB. It holds the journal open
// until its stdin closes.
func TestCatchUpChild(t *testing.T) {
	args := strings.Split(os.Getenv(catchUpChildEnv), "|")
	if len(args) != 3 {
		return
	}
	path, stream := args[0], args[2] == "stream"
	interval, err := time.ParseDuration(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	if stream {
		logTrimAt = 4 << 10
	}
	ctx := context.Background()
	j, err := Open(ctx, Options{Path: path, FlushInterval: interval, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	appendOne := func(n int) uint64 {
		seq, err := j.Append(ctx, model.Record{Kind: "catchup.test", Session: "s", Data: map[string]any{"n": n, "pad": strings.Repeat("x", 200)}}, model.Committed)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(4)
		}
		return seq
	}
	var last uint64
	for n := range catchUpRecords {
		last = appendOne(n)
	}
	fmt.Println(last)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := catchUpRecords; stream; n++ {
			select {
			case <-stop:
				return
			default:
			}
			// One write(2) per ack: whatever the parent reads was acked.
			os.Stdout.WriteString(strconv.FormatUint(appendOne(n), 10) + "\n")
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	close(stop)
	<-done
	if err := j.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "child close:", err)
		os.Exit(5)
	}
}

// startCatchUpWriter starts a writer process on path that moves its
// commit log into the database every flush, and returns the number of
// the last record it committed.
func startCatchUpWriter(t *testing.T, path string, flush time.Duration) int64 {
	t.Helper()
	last, _ := startCatchUpChild(t, path, flush, "count")
	return last
}

// startCatchUpChild starts the child in mode, and returns the number of
// the last of its first records and a reader of what it prints after.
func startCatchUpChild(t *testing.T, path string, flush time.Duration, mode string) (int64, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCatchUpChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), catchUpChildEnv+"="+path+"|"+flush.String()+"|"+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer process: %v: %s", err, stderr.String())
		}
	})
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("writer process said nothing (%v): %s", err, stderr.String())
	}
	last, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		t.Fatalf("writer process said %q", line)
	}
	return last, out
}

func countCatchUp(t *testing.T, path string) int {
	t.Helper()
	n := 0
	err := Entries(context.Background(), path, 1, func(e Entry) error {
		if e.Kind == "catchup.test" {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A reader in another process than the writer reads every record the
// writer committed before the read began, though the writer moves its
// commit log into the database only every flush interval.
func TestReaderCatchesUpWithAnotherProcess(t *testing.T) {
	path := tempPath(t)
	last := startCatchUpWriter(t, path, 800*time.Millisecond)
	// The test means something only while the records are in the log
	// alone.
	if head := int64(fileInt(t, path, `SELECT max(seq) FROM entries`)); head >= last {
		t.Fatalf("the database has entry %d already; the writer did not hold %d in its log", head, last)
	}
	if got := loggedHead(path); got != last {
		t.Fatalf("loggedHead = %d, want the writer's last entry %d", got, last)
	}
	if n := countCatchUp(t, path); n != catchUpRecords {
		t.Fatalf("the reader saw %d of the %d committed records", n, catchUpRecords)
	}
}

// A writer that does not move its log into the database holds a reader up
// for catchUpWait, no longer: the reader then reads what the database has.
func TestReaderCatchUpIsBounded(t *testing.T) {
	defer func(d time.Duration) { catchUpWait = d }(catchUpWait)
	catchUpWait = 300 * time.Millisecond
	path := tempPath(t)
	startCatchUpWriter(t, path, time.Hour)
	start := time.Now()
	n := countCatchUp(t, path)
	took := time.Since(start)
	if took < catchUpWait || took > catchUpWait+2*time.Second {
		t.Errorf("the read took %v; it should wait %v for the writer, and not much more", took, catchUpWait)
	}
	if n != 0 {
		t.Errorf("the reader saw %d records the database could not have yet", n)
	}
}

// While another process commits without pause, flushing every 5 ms and
// rewinding its log every 4 KiB (so a reader often parses a log being
// overwritten), every read finds the last entry whose Append had
// returned before the read began.
func TestReaderCatchesUpWhileAnotherProcessWrites(t *testing.T) {
	path := tempPath(t)
	first, out := startCatchUpChild(t, path, 5*time.Millisecond, "stream")
	var acked atomic.Int64
	acked.Store(first)
	go func() {
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				return
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil {
				acked.Store(n)
			}
		}
	}()
	reads, short := 0, 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); reads++ {
		want := acked.Load()
		found := false
		err := Entries(context.Background(), path, uint64(want), func(e Entry) error {
			found = found || int64(e.Seq) == want
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			short++
			t.Errorf("read %d: entry %d was acknowledged before the read began, and the read did not find it", reads, want)
		}
		time.Sleep(time.Millisecond)
	}
	if reads < 20 || acked.Load() < first+100 {
		t.Fatalf("%d reads while the writer got from entry %d to %d: too few to mean anything", reads, first, acked.Load())
	}
	t.Logf("%d reads, %d short, while the writer went from entry %d to %d", reads, short, first, acked.Load())
}
