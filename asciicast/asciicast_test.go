package asciicast

import (
	"bytes"
	"errors"
	"iter"
	"testing"
)

func seq(recs ...Record) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func TestWrite(t *testing.T) {
	euro := []byte("€") // three bytes, split across two chunks below
	recs := seq(
		Record{Seq: 1, Kind: "session.open", TimeNS: 1_700_000_000_500_000_000, Data: []byte(`{}`)},
		// An exec channel without a pty comes first and is not the terminal.
		Record{Seq: 2, Kind: "ssh.io", Data: []byte(`{"channel":0,"stream":"o","offset_ns":100,"bytes":3}`), Payload: []byte("abc")},
		Record{Seq: 3, Kind: "ssh.request", Data: []byte(`{"channel":1,"type":"pty-req","term":"xterm-256color","cols":100,"rows":30,"offset_ns":2000000000}`)},
		Record{Seq: 4, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"o","offset_ns":2500000000,"bytes":3}`), Payload: append([]byte("$ "), euro[0])},
		Record{Seq: 5, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"o","offset_ns":2600001234,"bytes":3}`), Payload: append(euro[1:], '<')},
		Record{Seq: 6, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"i","offset_ns":3000000000,"bytes":3}`), Payload: []byte("ls\r")},
		// Posted out of order by a few ns: time never goes backwards.
		Record{Seq: 7, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"e","offset_ns":2999999999,"bytes":4}`), Payload: []byte("\"x\"\n")},
		Record{Seq: 8, Kind: "ssh.resize", Data: []byte(`{"channel":1,"cols":120,"rows":40,"offset_ns":4000000000}`)},
		Record{Seq: 9, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"o","offset_ns":4100000000,"bytes":5}`)},
		Record{Seq: 10, Kind: "ssh.io", Data: []byte(`{"channel":0,"stream":"o","offset_ns":4200000000,"bytes":3}`), Payload: []byte("zzz")},
	)
	var b bytes.Buffer
	if err := Write(&b, recs); err != nil {
		t.Fatal(err)
	}
	want := `{"version":2,"width":100,"height":30,"timestamp":1700000002,"env":{"TERM":"xterm-256color"}}
[0.500000, "o", "$ "]
[0.600001, "o", "€<"]
[1.000000, "i", "ls\r"]
[1.000000, "o", "\"x\"\n"]
[2.000000, "r", "120x40"]
[2.100000, "m", "5 bytes of output not kept (deleted by retention)"]
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// Deterministic: the same records give the same bytes.
	var b2 bytes.Buffer
	Write(&b2, recs)
	if !bytes.Equal(b.Bytes(), b2.Bytes()) {
		t.Error("two renderings differ")
	}
}

func TestNoTerminal(t *testing.T) {
	var b bytes.Buffer
	err := Write(&b, seq(Record{Kind: "ssh.request", Data: []byte(`{"channel":0,"type":"exec","command":"true"}`)}))
	if !errors.Is(err, ErrNoTerminal) || b.Len() != 0 {
		t.Errorf("err %v, wrote %q", err, b.String())
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	err := Write(&bytes.Buffer{}, func(yield func(Record, error) bool) { yield(Record{}, boom) })
	if !errors.Is(err, boom) {
		t.Errorf("err %v", err)
	}
}

func TestFormatTime(t *testing.T) {
	for ns, want := range map[int64]string{0: "0.000000", 1999: "0.000001", 1_234_567_890: "1.234567", 61_000_000_000: "61.000000", -5: "0.000000"} {
		if got := FormatTime(ns); got != want {
			t.Errorf("FormatTime(%d) = %s, want %s", ns, got, want)
		}
	}
}

func TestWriteChannel(t *testing.T) {
	recs := seq(
		Record{Seq: 1, Kind: "session.open", TimeNS: 1_700_000_000_000_000_000, Data: []byte(`{}`)},
		Record{Seq: 2, Kind: "ssh.request", Data: []byte(`{"channel":0,"type":"pty-req","term":"xterm","cols":100,"rows":30,"offset_ns":1000000000}`)},
		Record{Seq: 3, Kind: "ssh.io", Data: []byte(`{"channel":0,"stream":"o","offset_ns":1100000000,"bytes":5}`), Payload: []byte("one\r\n")},
		// A second pty over the same connection.
		Record{Seq: 4, Kind: "ssh.request", Data: []byte(`{"channel":1,"type":"pty-req","term":"xterm","cols":90,"rows":20,"offset_ns":2000000000}`)},
		Record{Seq: 5, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"o","offset_ns":2500000000,"bytes":5}`), Payload: []byte("two\r\n")},
		// An exec without a pty: its "\n" gets the "\r" a pty adds,
		// including across chunks, and a "\r\n" it sent stays one.
		Record{Seq: 6, Kind: "ssh.request", Data: []byte(`{"channel":2,"type":"exec","command":"ls","offset_ns":3000000000}`)},
		Record{Seq: 7, Kind: "ssh.io", Data: []byte(`{"channel":2,"stream":"o","offset_ns":3100000000,"bytes":6}`), Payload: []byte("a\nb\r\nc\r")},
		Record{Seq: 8, Kind: "ssh.io", Data: []byte(`{"channel":2,"stream":"e","offset_ns":3200000000,"bytes":2}`), Payload: []byte("\nd")},
		Record{Seq: 9, Kind: "ssh.io", Data: []byte(`{"channel":2,"stream":"i","offset_ns":3300000000,"bytes":2}`), Payload: []byte("y\n")},
	)
	for ch, want := range map[uint32]string{
		1: `{"version":2,"width":90,"height":20,"timestamp":1700000002,"env":{"TERM":"xterm"}}
[0.500000, "o", "two\r\n"]
`,
		2: `{"version":2,"width":80,"height":24,"timestamp":1700000003}
[0.100000, "o", "a\r\nb\r\nc\r"]
[0.200000, "o", "\nd"]
[0.300000, "i", "y\n"]
`,
	} {
		var b bytes.Buffer
		if err := WriteChannel(&b, recs, ch); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("channel %d:\n%s\nwant:\n%s", ch, b.String(), want)
		}
	}
	if err := WriteChannel(&bytes.Buffer{}, recs, 7); !errors.Is(err, ErrNoChannel) {
		t.Errorf("a channel that never started: %v", err)
	}
}

// TestKubernetesExec: a kubernetes exec's records render like an ssh
// channel's: k8s.exec opens it, k8s.io and k8s.resize carry its stream.
func TestKubernetesExec(t *testing.T) {
	recs := seq(
		Record{Seq: 1, Kind: "session.open", TimeNS: 1_700_000_000_000_000_000, Data: []byte(`{}`)},
		Record{Seq: 2, Kind: "k8s.exec", Data: []byte(`{"channel":1,"seq":3,"type":"exec","namespace":"default","pod":"p","command":["sh"],"tty":true,"offset_ns":1000000000}`)},
		Record{Seq: 3, Kind: "k8s.resize", Data: []byte(`{"channel":1,"cols":100,"rows":30,"offset_ns":1100000000}`)},
		Record{Seq: 4, Kind: "k8s.io", Data: []byte(`{"channel":1,"stream":"o","offset_ns":1500000000,"bytes":2}`), Payload: []byte("$ ")},
		Record{Seq: 5, Kind: "k8s.io", Data: []byte(`{"channel":1,"stream":"i","offset_ns":2000000000,"bytes":3}`), Payload: []byte("id\r")},
		Record{Seq: 6, Kind: "k8s.exit", Data: []byte(`{"channel":1,"exit_status":0,"offset_ns":2500000000}`)},
	)
	var b bytes.Buffer
	if err := Write(&b, recs); err != nil {
		t.Fatal(err)
	}
	want := `{"version":2,"width":80,"height":24,"timestamp":1700000001}
[0.100000, "r", "100x30"]
[0.500000, "o", "$ "]
[1.000000, "i", "id\r"]
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// Without a tty it is no terminal, but its channel plays.
	b.Reset()
	plain := seq(Record{Seq: 1, Kind: "k8s.exec", Data: []byte(`{"channel":2,"type":"exec","offset_ns":0}`)},
		Record{Seq: 2, Kind: "k8s.io", Data: []byte(`{"channel":2,"stream":"o","offset_ns":5,"bytes":4}`), Payload: []byte("out\n")})
	if err := Write(&b, plain); !errors.Is(err, ErrNoTerminal) {
		t.Errorf("Write without a tty: %v", err)
	}
	if err := WriteChannel(&b, plain, 2); err != nil || !bytes.Contains(b.Bytes(), []byte(`"out\r\n"`)) {
		t.Errorf("WriteChannel: %v\n%s", err, b.String())
	}
}
