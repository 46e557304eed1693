package ssh

import (
	"bytes"
	"testing"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// newIORig is a channel's recorder over a journal in memory.
func newIORig(hold time.Duration) (*chanIO, *testkit.Journal) {
	j := &testkit.Journal{}
	c := &conn{h: &Handler{journal: j}, s: &inspect.Session{ID: "s"}, start: time.Now()}
	r := newChanIO(c, 3)
	r.hold = hold
	return r, j
}

// ioEntries returns the ssh.io entries in journal order.
func ioEntries(j *testkit.Journal) (data []model.SSHIO, payloads [][]byte) {
	for _, rec := range j.OfKind(model.KindSSHIO) {
		data = append(data, rec.Data.(model.SSHIO))
		payloads = append(payloads, rec.Payload.([]byte))
	}
	return data, payloads
}

// read stands for one read of a pump: p lands at the stream's free end.
func read(t *testing.T, s *ioStream, p []byte) {
	t.Helper()
	buf := s.next()
	if len(buf) < len(p) {
		t.Fatalf("read of %d bytes given %d", len(p), len(buf))
	}
	s.add(copy(buf, p))
}

func TestIOJoinsBackToBackReads(t *testing.T) {
	r, j := newIORig(time.Hour)
	o := r.stream("o")
	var sent []byte
	for i := range 40 {
		p := bytes.Repeat([]byte{byte(i)}, 32<<10)
		read(t, o, p)
		sent = append(sent, p...)
	}
	// A read that does not fill the buffer's rest leaves less room than
	// ioMinRead: the next one starts a new entry.
	for i := range 3 {
		p := bytes.Repeat([]byte{byte(100 + i)}, 120<<10)
		read(t, o, p)
		sent = append(sent, p...)
	}
	r.close()
	data, payloads := ioEntries(j)
	if len(data) != 10+3 {
		t.Errorf("%d entries for 40 reads of 32 KiB and 3 of 120 KiB, want 13 (%d KiB each at most)", len(data), ioBufSize>>10)
	}
	var got []byte
	for i, d := range data {
		if d.Channel != 3 || d.Stream != "o" || d.Bytes != len(payloads[i]) || d.Bytes > ioBufSize {
			t.Errorf("entry %d: %+v with %d bytes", i, d, len(payloads[i]))
		}
		if i > 0 && d.OffsetNS < data[i-1].OffsetNS {
			t.Errorf("entry %d at %d, before entry %d at %d", i, d.OffsetNS, i-1, data[i-1].OffsetNS)
		}
		got = append(got, payloads[i]...)
	}
	if !bytes.Equal(got, sent) {
		t.Errorf("recorded %d bytes, not the %d read, in order", len(got), len(sent))
	}
}

// Bytes that wait for more are posted after hold, though the stream reads
// nothing more: a shell's prompt is journaled while the shell waits.
func TestIOPostsWhatWaitedHold(t *testing.T) {
	r, j := newIORig(30 * time.Millisecond)
	defer r.close()
	o := r.stream("o")
	read(t, o, []byte("deploy@web-1:~$ "))
	if data, _ := ioEntries(j); len(data) != 0 {
		t.Fatalf("posted at once: %+v", data)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, payloads := ioEntries(j)
		if len(data) == 1 {
			if string(payloads[0]) != "deploy@web-1:~$ " || data[0].Bytes != 16 {
				t.Errorf("entry %+v %q", data[0], payloads[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing posted 5 s after the read (%d entries)", len(data))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Reads hold or more apart are entries of their own, each with its time:
// a replay keeps the timing of what was typed and drawn.
func TestIOSpacedReadsKeepTheirTimes(t *testing.T) {
	r, j := newIORig(10 * time.Millisecond)
	o := r.stream("o")
	for _, p := range []string{"a", "b", "c"} {
		read(t, o, []byte(p))
		time.Sleep(25 * time.Millisecond)
	}
	r.close()
	data, payloads := ioEntries(j)
	if len(data) != 3 {
		t.Fatalf("%d entries, want 3: %q", len(data), payloads)
	}
	for i := 1; i < 3; i++ {
		if gap := data[i].OffsetNS - data[i-1].OffsetNS; gap < int64(25*time.Millisecond) {
			t.Errorf("entries %d and %d are %v apart, the reads 25 ms", i-1, i, time.Duration(gap))
		}
	}
}

// The channel's entries keep the order the bytes came in, across streams:
// bytes of another stream end an entry, and so does a record the channel
// posts itself.
func TestIOKeepsTheChannelsOrder(t *testing.T) {
	r, j := newIORig(time.Hour)
	o, in := r.stream("o"), r.stream("i")
	read(t, o, []byte("output 1 "))
	time.Sleep(time.Millisecond)
	read(t, in, []byte("typed"))
	read(t, o, []byte("output 2"))
	r.post("e", []byte("interlock: message"))
	read(t, in, []byte("more"))
	r.close()
	data, payloads := ioEntries(j)
	var got []string
	for i, d := range data {
		got = append(got, d.Stream+":"+string(payloads[i]))
	}
	want := []string{"o:output 1 ", "i:typed", "o:output 2", "e:interlock: message", "i:more"}
	if len(got) != len(want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entries %q, want %q", got, want)
			break
		}
	}
	for i := 1; i < len(data); i++ {
		if data[i].OffsetNS < data[i-1].OffsetNS {
			t.Errorf("entry %d at %d, before entry %d at %d", i, data[i].OffsetNS, i-1, data[i-1].OffsetNS)
		}
	}
}
