package ssh

import (
	"bytes"
	"strings"
	"testing"
)

func scanAll(t *tunnelScan, chunks ...string) string {
	for _, c := range chunks {
		if f, _ := t.scan([]byte(c)); f != "" {
			return f
		}
	}
	return ""
}

func TestTunnelScanBanner(t *testing.T) {
	found := [][]string{
		{"SSH-2.0-OpenSSH_9.2p1\r\n"},
		{"SSH-1.99-x\r\n"},
		{"hello\nworld\nSSH-2.0-x"},
		{"S", "S", "H", "-", "2", ".", "0", "-"},
		{"some output\r\nSSH-2", ".0-OpenSSH"},
		{"line\n", "SSH-1.", "99-"},
		{strings.Repeat("x", 100000) + "\n", "SSH-2.0-"},
	}
	for _, c := range found {
		if f := scanAll(newTunnelScan(false), c...); f == "" {
			t.Errorf("%q: no banner found", c)
		}
	}
	clean := [][]string{
		{"xSSH-2.0-OpenSSH\n"},
		{"SSH-2.1-x\n"},
		{"SSH-2.0", "\n-"},
		{"SSH-1.9-x\n"},
		{"the banner SSH-2.0-OpenSSH is printed\n"},
		{"SSH-", "3.0-"},
		{strings.Repeat("SSH-2.", 1000)},
	}
	for _, c := range clean {
		if f := scanAll(newTunnelScan(false), c...); f != "" {
			t.Errorf("%q: found %s", c, f)
		}
	}
}

func TestTunnelScanSFTPInit(t *testing.T) {
	init := "\x00\x00\x00\x05\x01\x00\x00\x00\x03"
	for _, c := range [][]string{
		{init},
		{"x" + init},
		{"\x00\x00\x00", "\x05\x01\x00", "\x00\x00\x03"},
		{strings.Repeat("\x00", 5000), init[:4], init[4:]},
		{"a", "b", "c", init[:1], init[1:2], init[2:]},
	} {
		if f := scanAll(newTunnelScan(true), c...); f == "" {
			t.Errorf("%q: no sftp init found", c)
		}
	}
	for _, c := range [][]string{
		{"\x00\x00\x00\x05\x01\x00\x00\x00\x07"},
		{"\x00\x00\x00\x04\x01\x00\x00\x00\x03"},
		{"\x00\x00\x01\x05\x01\x00\x00\x00\x03"},
		{string(bytes.Repeat([]byte{0, 0, 0, 1}, 3000))},
	} {
		if f := scanAll(newTunnelScan(true), c...); f != "" {
			t.Errorf("%q: found %s", c, f)
		}
	}
	// The target's data is not scanned for it.
	if f := scanAll(newTunnelScan(false), init); f != "" {
		t.Errorf("target data: found %s", f)
	}
}

// BenchmarkTunnelScan measures the scan's cost per byte against a plain
// copy of the same data: text output with lines, and binary input.
func BenchmarkTunnelScan(b *testing.B) {
	text := bytes.Repeat([]byte("drwxr-xr-x  2 root root  4096 Dec  6 15:43 some-directory-name\n"), 128<<10/64)
	bin := make([]byte, 128<<10)
	for i := range bin {
		bin[i] = byte(i * 2654435761 >> 13)
	}
	for _, c := range []struct {
		name   string
		data   []byte
		client bool
	}{{"text-output", text, false}, {"binary-input", bin, true}, {"zeros-input", make([]byte, 128<<10), true}} {
		b.Run("copy-"+c.name, func(b *testing.B) {
			dst := make([]byte, len(c.data))
			b.SetBytes(int64(len(c.data)))
			for i := 0; i < b.N; i++ {
				copy(dst, c.data)
			}
		})
		b.Run("scan-"+c.name, func(b *testing.B) {
			t := newTunnelScan(c.client)
			b.SetBytes(int64(len(c.data)))
			for i := 0; i < b.N; i++ {
				if f, _ := t.scan(c.data); f != "" {
					b.Fatal(f)
				}
			}
		})
	}
}

// BenchmarkRelayTunnelScan relays 64 MiB each way through interlock with
// the tunnel scan on (the default) and off (exec.tunnels: allow), side by
// side.
func BenchmarkRelayTunnelScan(b *testing.B) {
	const size = 64 << 20
	for _, scan := range []bool{false, true} {
		for _, dir := range []string{"up", "down"} {
			name := map[bool]string{false: "noscan-", true: "scan-"}[scan] + dir
			b.Run(name, func(b *testing.B) {
				r := newRig(b, rigOpts{})
				(*r.h.targets.Load())["box"].tunnelsAllowed = !scan
				c, err := r.dial("alice")
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if dir == "up" {
						benchUpload(b, c, size)
					} else {
						benchDownload(b, c, size)
					}
				}
			})
		}
	}
}

// TestTunnelScanBefore: the bytes ahead of a banner's line in the read
// that completes it are its own output, whichever way the reads split.
func TestTunnelScanBefore(t *testing.T) {
	for _, c := range []struct {
		chunks []string
		before int
	}{
		{[]string{"hello\nSSH-2.0-relayed\r\n"}, 6},
		{[]string{"hello\nworld\nSSH-2.0-x"}, 12},
		{[]string{"hello\nS", "SH-2.0-"}, 0},
		{[]string{"hello\n", "more\nSSH-1.99-x"}, 5},
		{[]string{"SSH-2.0-x"}, 0},
		{[]string{"xx", "x\r\nSSH-2.0-"}, 3},
	} {
		tun := newTunnelScan(false)
		var found string
		var before int
		for _, ch := range c.chunks {
			if found, before = tun.scan([]byte(ch)); found != "" {
				break
			}
		}
		if found == "" || before != c.before {
			t.Errorf("%q: found %q, before %d, want %d", c.chunks, found, before, c.before)
		}
	}
}
