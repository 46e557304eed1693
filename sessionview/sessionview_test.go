package sessionview

import (
	"bytes"
	"encoding/json"
	"iter"
	"strings"
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

// session is a recorded session with what a terminal would hide: a pty
// shell where a line is typed, erased and another typed; a password typed
// with echo off; output that is not UTF-8 and output that clears a line;
// a refused exec whose command carries an escape sequence and a quote; an
// exec channel; an sftp channel.
func session() iter.Seq2[Record, error] {
	const open = 1_700_000_000_000_000_000
	return seq(
		Record{Seq: 1, Kind: "session.open", TimeNS: open, Data: []byte(`{"target":{"name":"box","protocol":"ssh","address":"h:22"},"orig_dst":"127.0.0.3:22","client":"127.0.0.1:5000","identity":{"kernel":{"pid":7,"tgid":7,"uid":0,"gid":0,"comm":"ssh","cgroup_id":1,"netns_cookie":1,"connect_boot_ns":1}},"decision":{"action":"allow","rule":"default"},"ssh":{"user":"root","client_version":"SSH-2.0-OpenSSH_9.2","auth_method":"publickey","upstream_host_key":"SHA256:x"}}`)},
		Record{Seq: 2, Kind: "ssh.channel", TimeNS: open + 1000, Data: []byte(`{"channel":0,"type":"session","decision":{"action":"allow","rule":"default"}}`)},
		Record{Seq: 3, Kind: "ssh.request", TimeNS: open + 2000, Data: []byte(`{"channel":0,"type":"pty-req","term":"xterm","cols":100,"rows":30,"decision":{"action":"allow","rule":"default"},"offset_ns":2000}`)},
		Record{Seq: 4, Kind: "ssh.request", TimeNS: open + 3000, Data: []byte(`{"channel":0,"type":"shell","decision":{"action":"allow","rule":"default"},"offset_ns":3000}`)},
		Record{Seq: 5, Kind: "ssh.io", TimeNS: open + 4000, Data: []byte(`{"channel":0,"stream":"i","offset_ns":4000,"bytes":17}`), Payload: []byte("rm -rf /srv\x15ls\r")},
		Record{Seq: 6, Kind: "ssh.io", TimeNS: open + 5000, Data: []byte(`{"channel":0,"stream":"o","offset_ns":5000,"bytes":16}`), Payload: []byte("a\\b\xff\xfe\r\x1b[2Kok\nz\n")},
		Record{Seq: 7, Kind: "ssh.io", TimeNS: open + 6000, Data: []byte(`{"channel":0,"stream":"i","offset_ns":6000,"bytes":8}`), Payload: []byte("hunter2\r")},
		Record{Seq: 8, Kind: "ssh.request", TimeNS: open + 7000, Data: []byte(`{"channel":0,"type":"exec","command":"id\u001b[2J\": allow (x)","decision":{"action":"deny","rule":"already-started","reason":"the channel already runs a program"},"offset_ns":7000}`)},
		Record{Seq: 9, Kind: "ssh.channel", TimeNS: open + 8000, Data: []byte(`{"channel":1,"type":"session","decision":{"action":"allow","rule":"default"}}`)},
		Record{Seq: 10, Kind: "ssh.request", TimeNS: open + 9000, Data: []byte(`{"channel":1,"type":"exec","command":"uname","decision":{"action":"allow","rule":"default"},"offset_ns":9000}`)},
		Record{Seq: 11, Kind: "ssh.io", TimeNS: open + 10000, Data: []byte(`{"channel":1,"stream":"o","offset_ns":10000,"bytes":6}`)},
		Record{Seq: 12, Kind: "ssh.exit", TimeNS: open + 11000, Data: []byte(`{"channel":1,"exit_status":0,"offset_ns":11000}`)},
		Record{Seq: 13, Kind: "ssh.channel", TimeNS: open + 12000, Data: []byte(`{"channel":2,"type":"session","decision":{"action":"allow","rule":"default"}}`)},
		Record{Seq: 14, Kind: "ssh.request", TimeNS: open + 13000, Data: []byte(`{"channel":2,"type":"subsystem","command":"sftp","decision":{"action":"allow","rule":"default"},"offset_ns":13000}`)},
		Record{Seq: 15, Kind: "ssh.sftp", TimeNS: open + 14000, Data: []byte(`{"channel":2,"op":"open","path":"/etc/passwd","flags":["read"],"status":"ok","decision":{"action":"allow","rule":"default"},"offset_ns":14000}`)},
		Record{Seq: 16, Kind: "session.close", TimeNS: open + 2_000_000_000, Data: []byte(`{"bytes_up":25,"bytes_down":22,"duration_ns":2000000000}`)},
	)
}

func TestPlain(t *testing.T) {
	var b bytes.Buffer
	s, err := WritePlain(&b, "S1", session(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`+0.000004 ch 0  in  "rm -rf /srv\x15ls\r"`,
		`+0.000005 ch 0  out "a\\b\xff\xfe\r\x1b[2Kok\n"`,
		"\n                    \"z\\n\"\n",
		`+0.000006 ch 0  in  "hunter2\r"`,
		`+0.000007 ch 0  request exec "id\x1b[2J\": allow (x)": deny (already-started): "the channel already runs a program"`,
		`+0.000010 ch 1  out [6 bytes not kept: deleted by retention]`,
		`+0.000011 ch 1  exit status 0`,
		`+0.000014 ch 2  sftp open "/etc/passwd" [read], status "ok": allow (default)`,
		`+2.000000       session close: 25 bytes up, 22 down, 2s`,
		`session open: target "box" (ssh) 127.0.0.3:22, pid 7 uid 0 comm "ssh", user "root"`,
		`  ch 1 session: exec "uname": allow (default), exit status 0, 0 bytes in, 6 out, 0 err`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plain view lacks %q:\n%s", want, out)
		}
	}
	// Nothing a terminal acts on reaches it.
	if strings.ContainsAny(out, "\x1b\r\x15\xff") {
		t.Errorf("plain view has raw control bytes:\n%q", out)
	}
	var ids []uint32
	for _, c := range s.Terminals() {
		ids = append(ids, c.Channel)
	}
	if len(ids) != 2 || ids[0] != 0 || ids[1] != 1 {
		t.Errorf("terminal channels %v, want [0 1] (2 is sftp)", ids)
	}
	if c := s.Channel(0); len(c.Refused) != 1 || c.PTY == nil || c.Program.Type != "shell" {
		t.Errorf("channel 0: %+v", c)
	}
}

func TestJSONIsByteExact(t *testing.T) {
	var b bytes.Buffer
	if _, err := WriteJSON(&b, "S1", session(), nil); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Session  string
		Events   []Event
		Channels []Channel
	}
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if v.Session != "S1" || len(v.Events) != 16 || len(v.Channels) != 3 {
		t.Fatalf("session %q, %d events, %d channels", v.Session, len(v.Events), len(v.Channels))
	}
	if got := v.Events[5].Payload; string(got) != "a\\b\xff\xfe\r\x1b[2Kok\nz\n" {
		t.Errorf("payload %q", got)
	}
	if !v.Events[10].PayloadDeleted || v.Events[10].Payload != nil {
		t.Errorf("deleted payload: %+v", v.Events[10])
	}
	// JSONL: the same events, one a line; channel 1 only.
	b.Reset()
	ch := uint32(1)
	if _, err := WriteJSONL(&b, session(), &ch); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 6 { // session.open and .close, and channel 1's four
		t.Errorf("%d lines:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if e.Channel != nil && *e.Channel != 1 {
			t.Errorf("channel %d in a channel 1 export", *e.Channel)
		}
	}
	// Raw: the exact bytes of one stream.
	b.Reset()
	if _, del, err := WriteRaw(&b, session(), 0, "i"); err != nil || del != 0 || b.String() != "rm -rf /srv\x15ls\rhunter2\r" {
		t.Errorf("raw input %q, deleted %d, %v", b.String(), del, err)
	}
	b.Reset()
	if _, del, err := WriteRaw(&b, session(), 1, "o"); err != nil || del != 6 || b.Len() != 0 {
		t.Errorf("raw output of a deleted chunk: %q, deleted %d, %v", b.String(), del, err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`a"b`:         `"a\"b"`,
		"x\x1b[31m\\": `"x\x1b[31m\\"`,
		"\u202eevil":  `"\u202eevil"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTerminalSubsystem(t *testing.T) {
	s, err := Read(seq(
		Record{Seq: 1, Kind: "ssh.request", Data: []byte(`{"channel":0,"type":"subsystem","command":"netconf","decision":{"action":"allow"},"offset_ns":1}`)},
		Record{Seq: 2, Kind: "ssh.io", Data: []byte(`{"channel":0,"stream":"o","offset_ns":2,"bytes":2}`), Payload: []byte("<>")},
		Record{Seq: 3, Kind: "ssh.request", Data: []byte(`{"channel":1,"type":"subsystem","command":"sftp","decision":{"action":"allow"},"offset_ns":3}`)},
		Record{Seq: 4, Kind: "ssh.io", Data: []byte(`{"channel":1,"stream":"e","offset_ns":4,"bytes":1}`), Payload: []byte("x")},
		Record{Seq: 5, Kind: "ssh.request", Data: []byte(`{"channel":2,"type":"subsystem","command":"netconf","decision":{"action":"deny"},"offset_ns":5}`)},
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	for ch, want := range map[uint32]bool{0: true, 1: false, 2: false} {
		if got := s.Channel(ch).Terminal(); got != want {
			t.Errorf("channel %d: Terminal() = %v, want %v", ch, got, want)
		}
	}
}
