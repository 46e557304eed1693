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
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

const catchUpChildEnv = "INTERLOCK_JOURNAL_CATCHUP_CHILD"

// catchUpRecords is how many records the child commits to its log.
const catchUpRecords = 5

// TestCatchUpChild is the writer process of the catch-up tests; it does
// nothing unless started by one. It commits catchUpRecords records (to
// its commit log: it writes alone), prints the last one's number, and
// holds the journal open until its stdin closes.
func TestCatchUpChild(t *testing.T) {
	path, flush, ok := strings.Cut(os.Getenv(catchUpChildEnv), "|")
	if !ok {
		return
	}
	interval, err := time.ParseDuration(flush)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	j, err := Open(ctx, Options{Path: path, FlushInterval: interval, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var last uint64
	for n := range catchUpRecords {
		if last, err = j.Append(ctx, model.Record{Kind: "catchup.test", Session: "s", Data: map[string]int{"n": n}}, model.Committed); err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(4)
		}
	}
	fmt.Println(last)
	io.Copy(io.Discard, os.Stdin)
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestCatchUpChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), catchUpChildEnv+"="+path+"|"+flush.String())
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
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("writer process said nothing (%v): %s", err, stderr.String())
	}
	last, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		t.Fatalf("writer process said %q", line)
	}
	return last
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
