package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// crashKills is how many times TestCrashSuite kills a writer process.
const crashKills = 32

const crashChildEnv = "INTERLOCK_JOURNAL_CRASH_CHILD"

// crashRecord is what the child appends; ID names it in the ack.
type crashRecord struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

// TestCrashChild is the writer process of TestCrashSuite; it does nothing
// unless started by it. Concurrent goroutines append (Committed and
// Synced) and post, and print "seq id" on stdout as each Append returns.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		return
	}
	j, err := Open(context.Background(), Options{Path: path, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			for n := 0; ; n++ {
				id := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, n)
				d := model.Committed
				if n%3 == 0 {
					d = model.Synced
				}
				if g%4 == 0 {
					j.Post(model.Record{Kind: model.KindSSHIO, Session: "posted", Data: crashRecord{ID: "p" + id, N: n}, Payload: []byte(id)})
				}
				seq, err := j.Append(context.Background(), model.Record{Kind: "crash.test", Session: strconv.Itoa(g), Data: crashRecord{ID: id, N: n}, Payload: []byte(id)}, d)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				mu.Lock()
				// One write(2) per ack: whatever the parent reads was acked.
				os.Stdout.WriteString(strconv.FormatUint(seq, 10) + " " + id + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashSuite: a process with concurrent writers is killed with SIGKILL
// at a random moment, again and again on the same journal. After every
// kill, every Append that returned is in the journal under the seq it
// returned, verify passes, and SQLite's integrity_check (the real sqlite3
// shell) says ok; the next writer process then opens the same journal,
// re-checks and signs what the dead one left unsigned, and goes on.
func TestCrashSuite(t *testing.T) {
	_, err := os.Stat(sqlite3CLI)
	testenv.Require(t, "the crash suite needs "+sqlite3CLI, err)
	path := filepath.Join(t.TempDir(), "crash.db")
	r := rand.New(rand.NewPCG(7, 7))
	acked := map[uint64]string{}
	for kill := range crashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it get going (the first ack), then kill it at a random point.
		first, ok := <-lines
		if !ok {
			cmd.Wait()
			t.Fatalf("kill %d: child wrote nothing: %s", kill, stderr.String())
		}
		time.Sleep(time.Duration(5+r.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		var got []string
		got = append(got, first)
		for l := range lines {
			got = append(got, l)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, not SIGKILL: %s", kill, err, stderr.String())
		}
		for _, l := range got {
			seqS, id, ok := strings.Cut(l, " ")
			seq, err := strconv.ParseUint(seqS, 10, 64)
			if !ok || err != nil {
				t.Fatalf("kill %d: bad ack line %q", kill, l)
			}
			if prev, dup := acked[seq]; dup {
				t.Fatalf("kill %d: seq %d acked for %s and earlier for %s", kill, seq, id, prev)
			}
			acked[seq] = id
		}
		checkAfterCrash(t, kill, path, acked)
		t.Logf("kill %d: %d appends acked so far", kill, len(acked))
	}
}

func checkAfterCrash(t *testing.T, kill int, path string, acked map[uint64]string) {
	t.Helper()
	found := 0
	err := Entries(context.Background(), path, 1, func(e Entry) error {
		id, ok := acked[e.Seq]
		if !ok {
			return nil
		}
		var b struct{ Data crashRecord }
		if err := json.Unmarshal(e.Body, &b); err != nil {
			return err
		}
		if b.Data.ID != id || string(e.Payload) != id {
			return fmt.Errorf("entry %d holds %q (payload %q), Append returned it for %q", e.Seq, b.Data.ID, e.Payload, id)
		}
		found++
		return nil
	})
	if err != nil {
		t.Fatalf("kill %d: %v", kill, err)
	}
	if found != len(acked) {
		t.Fatalf("kill %d: %d of %d acked appends are in the journal", kill, found, len(acked))
	}
	rep, err := Verify(context.Background(), path, nil)
	if err != nil || !rep.OK {
		t.Fatalf("kill %d: verify: %+v %v", kill, rep, err)
	}
	out, err := exec.Command(sqlite3CLI, path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("kill %d: integrity_check: %s %v", kill, out, err)
	}
}
