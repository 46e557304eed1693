package identity

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

func TestProcfsParseStat(t *testing.T) {
	tail := " 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615\n"
	cases := []struct {
		name  string
		line  string
		comm  string
		state byte
		ppid  uint32
		start uint64
		ok    bool
	}{
		{"plain", "100 (sleep) S 42" + tail, "sleep", 'S', 42, 123456, true},
		{"spaces", "100 (my prog) R 7" + tail, "my prog", 'R', 7, 123456, true},
		{"paren space inside", "100 (a) S 99 (b) Z 5" + tail, "a) S 99 (b", 'Z', 5, 123456, true},
		{"only parens", "100 ()) ()) S 3" + tail, ")) ()", 'S', 3, 123456, true},
		{"empty comm", "100 () S 3" + tail, "", 'S', 3, 123456, true},
		{"truncated", "100 (x) S 3 1 1", "", 0, 0, 0, false},
		{"no parens", "100 x S 3" + tail, "", 0, 0, 0, false},
		{"garbage ppid", "100 (x) S -3" + tail, "", 0, 0, 0, false},
		{"overflow start", "100 (x) S 3 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999999 1\n", "", 0, 0, 0, false},
		{"empty", "", "", 0, 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, ok := procfsParseStat([]byte(c.line))
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			if string(st.comm) != c.comm || st.state != c.state || st.ppid != c.ppid || st.startTicks != c.start {
				t.Fatalf("got comm=%q state=%c ppid=%d start=%d", st.comm, st.state, st.ppid, st.startTicks)
			}
		})
	}
}

func TestProcfsParseStatSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err) // procfs is what interlock reads identities from
	}
	st, ok := procfsParseStat(b)
	if !ok {
		t.Fatalf("cannot parse %q", b)
	}
	if int(st.ppid) != os.Getppid() {
		t.Fatalf("ppid %d, want %d", st.ppid, os.Getppid())
	}
	// independent parse: field 22 counted from after the last ')'
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if f[19] == "" || st.startTicks == 0 {
		t.Fatalf("start ticks %d, fields %v", st.startTicks, f)
	}
}

func TestProcfsParseStatus(t *testing.T) {
	in := "Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t9\nPid:\t9\nPPid:\t1\n" +
		"Uid:\t1000\t0\t0\t0\nGid:\t1001\t5\t5\t5\nFDSize:\t64\nGroups:\t4 24\nVmRSS:\t12 kB\nThreads:\t3\nSigQ:\t0/1\n"
	st := procfsParseStatus([]byte(in))
	if !st.haveUID || !st.haveGID || st.ruid != 1000 || st.euid != 0 || st.rgid != 1001 || st.egid != 5 || st.threads != 3 {
		t.Fatalf("got %+v", st)
	}
	st = procfsParseStatus([]byte("Name:\tx\nUid:\tabc\n"))
	if st.haveUID || st.threads != -1 {
		t.Fatalf("garbage accepted: %+v", st)
	}
}

func TestProcfsParseCmdline(t *testing.T) {
	if got := procfsParseCmdline([]byte("sleep\x0030\x00"), false); !reflect.DeepEqual(got, []string{"sleep", "30"}) {
		t.Fatalf("got %q", got)
	}
	if got := procfsParseCmdline([]byte("a\x00\x00b\x00"), false); !reflect.DeepEqual(got, []string{"a", "", "b"}) {
		t.Fatalf("empty arg lost: %q", got)
	}
	// setproctitle-style, no NUL at all
	if got := procfsParseCmdline([]byte("postgres: checkpointer"), false); !reflect.DeepEqual(got, []string{"postgres: checkpointer"}) {
		t.Fatalf("got %q", got)
	}
	if got := procfsParseCmdline(nil, false); got != nil {
		t.Fatalf("empty cmdline: %q", got)
	}
	// too many args
	var b []byte
	for i := 0; i < 300; i++ {
		b = append(b, 'x', 0)
	}
	got := procfsParseCmdline(b, false)
	if len(got) != procfsCmdlineMaxArgs+1 || got[len(got)-1] != procfsTruncatedMark || got[0] != "x" || got[255] != "x" {
		t.Fatalf("len %d last %q", len(got), got[len(got)-1])
	}
	// truncated by bytes
	got = procfsParseCmdline([]byte("a\x00bbbb"), true)
	if !reflect.DeepEqual(got, []string{"a", "bbbb", procfsTruncatedMark}) {
		t.Fatalf("got %q", got)
	}
	// invalid UTF-8 survives JSON
	got = procfsParseCmdline([]byte("ok\x00bad\xff\xfe\x00"), false)
	if !utf8.ValidString(got[1]) || got[1] != "bad\uFFFD" {
		t.Fatalf("got %q", got[1])
	}
}

func TestProcfsParseClaims(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	env := "PATH=/usr/bin\x00GITHUB_TOKEN=ghs_secret\x00GITHUB_REPOSITORY=org/repo\x00" +
		"GITHUB_REPOSITORY=evil/second\x00CI=true\x00AWS_SECRET_ACCESS_KEY=x\x00GITHUB_REF=" + long +
		"\x00=novar\x00noequals\x00CI_JOB_ID=42\x00BUILD_TAG=bad\xff\x00"
	got := procfsParseClaims([]byte(env), false)
	if got["GITHUB_REPOSITORY"] != "org/repo" || got["CI"] != "true" || got["CI_JOB_ID"] != "42" {
		t.Fatalf("got %q", got)
	}
	for k := range got {
		if _, ok := procfsClaimVars[k]; !ok {
			t.Fatalf("not allow-listed: %s", k)
		}
	}
	if _, ok := got["GITHUB_TOKEN"]; ok {
		t.Fatal("secret copied")
	}
	if r := got["GITHUB_REF"]; len(r) > procfsClaimMaxValue || !utf8.ValidString(r) || !strings.HasPrefix(long, r) || len(r) < procfsClaimMaxValue-3 {
		t.Fatalf("GITHUB_REF capped badly: %d bytes", len(r))
	}
	if !utf8.ValidString(got["BUILD_TAG"]) {
		t.Fatalf("invalid UTF-8 kept: %q", got["BUILD_TAG"])
	}
	if len(got) != 5 {
		t.Fatalf("got %d claims: %q", len(got), got)
	}
	// truncated block: the last (partial) entry is dropped
	got = procfsParseClaims([]byte("CI=true\x00GITHUB_SHA=abc"), true)
	if _, ok := got["GITHUB_SHA"]; ok || got["CI"] != "true" {
		t.Fatalf("got %q", got)
	}
	if got := procfsParseClaims([]byte("PATH=/bin\x00"), false); got != nil {
		t.Fatalf("want nil map, got %q", got)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatal(err)
	}
}

func TestProcfsReadAt(t *testing.T) {
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &procfsScratch{buf: make([]byte, 100)}
	data, trunc, err := procfsReadAt(s, dfd, "big", 1<<20)
	if err != nil || trunc || !bytes.Equal(data, big) {
		t.Fatalf("full read: err=%v trunc=%v len=%d", err, trunc, len(data))
	}
	data, trunc, err = procfsReadAt(s, dfd, "big", 1000)
	if err != nil || !trunc || !bytes.Equal(data, big[:1000]) {
		t.Fatalf("capped read: err=%v trunc=%v len=%d", err, trunc, len(data))
	}
	data, trunc, err = procfsReadAt(s, dfd, "big", len(big))
	if err != nil || trunc || len(data) != len(big) {
		t.Fatalf("exact read: err=%v trunc=%v len=%d", err, trunc, len(data))
	}
	if _, _, err := procfsReadAt(s, dfd, "missing", 10); err != unix.ENOENT {
		t.Fatalf("missing: %v", err)
	}
	// real procfs: cmdline larger than the scratch buffer
	pdfd, err := unix.Open("/proc/self", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err) // procfs is what interlock reads identities from
	}
	defer unix.Close(pdfd)
	want, _ := os.ReadFile("/proc/self/status")
	s = &procfsScratch{buf: make([]byte, 64)}
	data, _, err = procfsReadAt(s, pdfd, "status", procfsMaxSmallFile)
	if err != nil || !bytes.HasPrefix(data, []byte("Name:")) || len(data) < len(want)/2 {
		t.Fatalf("status: err=%v len=%d want≈%d", err, len(data), len(want))
	}
}
