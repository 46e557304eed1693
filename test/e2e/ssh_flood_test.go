package e2e

// Class 3, "any client can make the journal lose records" (issue 13): a
// flood of made-up global requests over two connections must not cost the
// journal a single record, the flooder's own or another user's. Uid A
// (nobody) floods with a raw-protocol client (x/crypto/ssh) while typing
// commands into a pty shell on one of the flooding connections; uid B
// (daemon), from another cgroup, runs real ssh sessions that print known
// output.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
)

// floodResult is what test/e2e/sshflood prints.
type floodResult struct {
	Sent   []uint64 `json:"sent"`
	Typed  []string `json:"typed"`
	Output string   `json:"output"`
	Error  string   `json:"error"`
}

// floodEntry is a journal entry with its payload.
type floodEntry struct {
	entry
	Payload []byte
}

func floodEntries(t *testing.T, path string) []floodEntry {
	t.Helper()
	var out []floodEntry
	err := journal.Entries(context.Background(), path, 1, func(en journal.Entry) error {
		var x entry
		if err := json.Unmarshal(en.Body, &x); err != nil {
			return err
		}
		out = append(out, floodEntry{entry: x, Payload: en.Payload})
		return nil
	})
	if err != nil {
		t.Fatalf("read journal: %v", err)
	}
	return out
}

// bOutput is what B's session k prints.
func bOutput(k, lines int) string {
	var b strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&b, "line-%d-%d\n", k, i)
	}
	return b.String()
}

// TestSSHGlobalRequestFloodLosesNoRecord: the flood. Requests
// that carry no operation are counted per type, in one entry per session.
func TestSSHGlobalRequestFloodLosesNoRecord(t *testing.T) { sshFlood(t, "global") }

// TestSSHChannelRequestFloodLosesNoRecord: the same flood on a session
// channel: counted per channel and type as well, and nothing of A's or
// B's is lost.
func TestSSHChannelRequestFloodLosesNoRecord(t *testing.T) { sshFlood(t, "channel") }

func sshFlood(t *testing.T, on string) {
	st := startSSHD(t)
	floodBin := filepath.Join(binDir, "sshflood")
	if out, err := exec.Command("go", "build", "-o", floodBin, "./sshflood").CombinedOutput(); err != nil {
		t.Fatalf("build sshflood: %v\n%s", err, out)
	}
	cgA, dirA := makeCgroup(t, "sshflood-a-"+strconv.Itoa(os.Getpid()))
	cgB, dirB := makeCgroup(t, "sshflood-b-"+strconv.Itoa(os.Getpid()))
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf("intercept:\n  cgroups: [%s, %s]\n", cgA, cgB)})
	d := e.startDaemon()

	// B's key and home: its own copy, readable by B only.
	home, keyB := st.clientHome(t, uidB)

	// The flood lasted 4 s.
	floodFor := 4 * time.Second
	flooder := inCgroup(t, dirA, asUID(uidA, floodBin, "-addr", st.addr(), "-conns", "2", "-duration", floodFor.String(), "-commands", "8", "-on", on)...)
	var aOut, aErr bytes.Buffer
	flooder.Stdout, flooder.Stderr = &aOut, &aErr
	start := time.Now()
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- flooder.Wait() }()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dirA, "cgroup.kill"), []byte("1"), 0)
		<-aDone
	})

	// B: rounds of six concurrent exec sessions for as long as A floods.
	const perRound, lines = 6, 2000
	type bRun struct {
		k        int
		stdout   string
		stderr   string
		code     int
		duration time.Duration
	}
	var (
		bMu   sync.Mutex
		bRuns []bRun
	)
	time.Sleep(500 * time.Millisecond) // A's flood is under way
	var aErrRun error
	for round := 0; ; round++ {
		var wg sync.WaitGroup
		for i := range perRound {
			k := round*perRound + i
			wg.Add(1)
			go func() {
				defer wg.Done()
				argv := []string{"ssh"}
				argv = append(argv, st.clientOpts("")...)
				argv = append(argv, "-i", keyB, "-p", strconv.Itoa(st.port), "root@127.0.0.3",
					fmt.Sprintf("for i in $(seq 1 %d); do echo line-%d-$i; done", lines, k))
				cmd := inCgroup(t, dirB, asUID(uidB, argv...)...)
				cmd.Env = append(os.Environ(), "HOME="+home)
				var o, eb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &o, &eb
				s := time.Now()
				err := cmd.Run()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					code = -1
				}
				bMu.Lock()
				bRuns = append(bRuns, bRun{k: k, stdout: o.String(), stderr: eb.String(), code: code, duration: time.Since(s)})
				bMu.Unlock()
			}()
		}
		wg.Wait()
		done := false
		select {
		case aErrRun = <-aDone:
			aDone <- aErrRun // for the cleanup
			done = true
		default:
		}
		if done {
			break
		}
	}
	aTook := time.Since(start)
	if aErrRun != nil {
		t.Fatalf("A's flooder failed: %v\n%s\n%s", aErrRun, aOut.String(), aErr.String())
	}
	var a floodResult
	if err := json.Unmarshal(aOut.Bytes(), &a); err != nil {
		t.Fatalf("A's flooder printed %q: %v", aOut.String(), err)
	}
	var sent uint64
	for _, n := range a.Sent {
		sent += n
	}
	t.Logf("A sent %d unknown %s requests over %d connections in %s (%.0f/s); B ran %d sessions of %d lines",
		sent, on, len(a.Sent), aTook.Round(time.Millisecond), float64(sent)/aTook.Seconds(), len(bRuns), lines)
	var slowest time.Duration
	for _, r := range bRuns {
		slowest = max(slowest, r.duration)
		if r.code != 0 || r.stdout != bOutput(r.k, lines) {
			t.Errorf("B's session %d: exit %d, %d bytes of output (want %d) in %s: %s", r.k, r.code, len(r.stdout), len(bOutput(r.k, lines)), r.duration, r.stderr)
		}
	}
	t.Logf("B's slowest session took %s", slowest.Round(time.Millisecond))
	// The daemon's shutdown closes the journal: everything posted is in.
	d.stop(t, syscall.SIGTERM)

	es := floodEntries(t, e.journal)
	uid := map[string]uint32{}        // session → uid
	bK := map[string]int{}            // B's session → k
	out := map[string]*bytes.Buffer{} // session → stdout bytes
	in := map[string]*bytes.Buffer{}  // session → client input bytes
	var counted uint64
	countEntries := map[string]int{}
	for _, en := range es {
		switch en.Kind {
		case model.KindGap:
			t.Errorf("journal.gap at %d: %s", en.Seq, en.Data)
		case model.KindSessionOpen:
			var so model.SessionOpen
			json.Unmarshal(en.Data, &so)
			uid[en.Session] = so.Identity.Kernel.UID
		case model.KindSSHRequest:
			var q struct {
				model.SSHRequest
				Count uint64 `json:"count"`
			}
			json.Unmarshal(en.Data, &q)
			if q.Type == "flood@example.com" {
				counted += max(q.Count, 1)
				countEntries[en.Session]++
			}
			if q.Type == "exec" && strings.Contains(q.Command, "echo line-") {
				var k int
				if _, err := fmt.Sscanf(q.Command[strings.Index(q.Command, "echo line-"):], "echo line-%d-", &k); err == nil {
					bK[en.Session] = k
				}
			}
		case model.KindSSHIO:
			var io model.SSHIO
			json.Unmarshal(en.Data, &io)
			m := out
			if io.Stream == "i" {
				m = in
			} else if io.Stream != "o" {
				continue
			}
			if m[en.Session] == nil {
				m[en.Session] = &bytes.Buffer{}
			}
			m[en.Session].Write(en.Payload)
		}
	}

	// The flood is counted, not journaled request by request.
	if counted != sent {
		t.Errorf("the journal counts %d of A's requests, A sent %d", counted, sent)
	}
	for s, n := range countEntries {
		if uid[s] != uidA || n > 2 {
			t.Errorf("session %s (uid %d) has %d ssh.request entries for the flood, want at most 2 of A's", s, uid[s], n)
		}
	}
	if len(countEntries) != 2 {
		t.Errorf("the flood is counted in %d sessions, want A's 2", len(countEntries))
	}

	// A's own shell: every command typed is journaled, and its output.
	var aShell string
	for s, b := range in {
		if uid[s] == uidA {
			aShell = s
			for _, line := range a.Typed {
				if !strings.Contains(b.String(), line+"\n") && !strings.Contains(b.String(), line+"\r") {
					t.Errorf("A typed %q; the journal's input of %s lacks it", line, s)
				}
			}
		}
	}
	if aShell == "" || len(a.Typed) != 8 {
		t.Fatalf("no input journaled for A's shell (typed %d commands)", len(a.Typed))
	}
	for k := range a.Typed {
		res := fmt.Sprintf("result-%d", 1000+k)
		if !strings.Contains(a.Output, res) {
			t.Errorf("A's shell did not print %s: %q", res, a.Output)
		}
		if out[aShell] == nil || !strings.Contains(out[aShell].String(), res) {
			t.Errorf("the journal's output of A's shell lacks %s", res)
		}
	}

	// B: every line of every session, exactly.
	seen := map[int]bool{}
	for s, k := range bK {
		if uid[s] != uidB {
			t.Errorf("session %s runs B's command %d as uid %d", s, k, uid[s])
			continue
		}
		seen[k] = true
		got := ""
		if out[s] != nil {
			got = out[s].String()
		}
		if want := bOutput(k, lines); got != want {
			t.Errorf("B's session %d (%s): the journal holds %d of %d bytes of its output (%d of %d lines)",
				k, s, len(got), len(want), strings.Count(got, "\n"), lines)
		}
	}
	if len(seen) != len(bRuns) {
		t.Errorf("the journal has %d of B's %d sessions", len(seen), len(bRuns))
	}

	if o, stderr, code := e.interlock("journal", "verify", "-j", e.journal); code != 0 {
		t.Errorf("journal verify: exit %d\n%s%s", code, o, stderr)
	}
}
