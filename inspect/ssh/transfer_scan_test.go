package ssh

import (
	"bytes"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

func testFileScanner(t *testing.T) *fileScanner {
	t.Helper()
	om, err := newOutputMask(testMasker{policy.NewMaskerWithKey(make([]byte, 32))}, &model.MaskSpec{Rules: []model.MaskRule{{
		Rule: "pii", Live: true, Detectors: []string{"email", "card", "cloud_key", "token", "private_key", "national_id"}}}})
	if err != nil {
		t.Fatal(err)
	}
	om.ruleOf[boundaryDetector] = "pii"
	return &fileScanner{om: om}
}

const scanKey = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1y5a3b4c5d6e7f8g9h0i1j2k3l4m5n6o7p8q9r0s1t2u3v4\nw5x6y7z8A9B0C1D2E3F4G5H6I7J8K9L0M1N2O3P4Q5R6S7T8U9V0W1X2Y3Z4a5b6\n-----END RSA PRIVATE KEY-----\n"

var scanSecrets = []string{"alice@example.com", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", "MIIEowIBAAKCAQEAx1y5a3b4c5d6e7f8g9h0i1j2k3l4m5n6o7p8q9r0s1t2u3v4"}

func scanFile() []byte {
	var b bytes.Buffer
	b.WriteString("plain text line\n")
	for i := 0; i < 3; i++ {
		b.WriteString("contact alice@example.com card 4111 1111 1111 1111 key AKIAIOSFODNN7EXAMPLE done\n")
		b.WriteString(scanKey)
		b.WriteString(strings.Repeat("filler words here ", 20) + "\n")
	}
	b.WriteString("tail without newline alice@example.com")
	return b.Bytes()
}

// Every way of cutting a file into replies gives the same masked bytes,
// of the file's length, holding none of the secrets, whether the reader
// pauses between replies or not.
func TestFileScannerSplits(t *testing.T) {
	file := scanFile()
	whole := testFileScanner(t)
	want := append(whole.next(file, releaseMore), whole.next(nil, releaseFinal)...)
	if len(want) != len(file) {
		t.Fatalf("masked length %d, file %d", len(want), len(file))
	}
	for _, s := range scanSecrets {
		if bytes.Contains(want, []byte(s)) {
			t.Fatalf("%q survives in %s", s, want)
		}
	}
	if !bytes.Contains(want, []byte("plain text line\n")) || !bytes.Contains(want, []byte("-----BEGIN")) && !bytes.Contains(want, []byte("*****")) {
		t.Fatalf("masked too much: %s", want)
	}
	for _, pause := range []bool{false, true} {
		for size := 1; size <= 97; size += 3 {
			f := testFileScanner(t)
			var got []byte
			for off := 0; off < len(file); off += size {
				got = append(got, f.next(file[off:min(off+size, len(file))], releaseMore)...)
				if pause {
					got = append(got, f.next(nil, releaseTimeout)...)
				}
			}
			got = append(got, f.next(nil, releaseFinal)...)
			if len(got) != len(file) {
				t.Fatalf("size %d pause %v: masked length %d, file %d", size, pause, len(got), len(file))
			}
			for _, s := range scanSecrets {
				// Any 6 bytes of a secret in the clear is a leak.
				for i := 0; i+6 <= len(s); i++ {
					if part := s[i : i+6]; !strings.Contains(part, " ") && bytes.Contains(got, []byte(part)) {
						t.Fatalf("size %d pause %v: %q of %q in the clear:\n%s", size, pause, part, s, got)
					}
				}
			}
			if !pause && !bytes.Equal(got, want) {
				t.Fatalf("size %d: masked differently:\n%s\nwant\n%s", size, got, want)
			}
		}
	}
}

func TestRiskyTail(t *testing.T) {
	for _, c := range []struct{ in, tail string }{
		{"hello world", "world"},
		{"card 4111 1111", "4111 1111"},
		{"card 4111 ", "4111 "},
		{"ends here.\n", ""},
		{"x, bob@exa", "bob@exa"},
	} {
		r := riskyTail([]byte(c.in), 0)
		if got := c.in[r:]; got != c.tail {
			t.Errorf("riskyTail(%q) = %q, want %q", c.in, got, c.tail)
		}
	}
}

func TestScpSource(t *testing.T) {
	for cmd, want := range map[string]bool{
		"scp -f /etc/passwd": true, "scp -v -r -f -- x": true, "/usr/bin/scp -pf x": true,
		"scp -t /tmp": false, "scp -- -f": false, "cat x": false, "scpx -f x": false,
	} {
		if got := scpSource(cmd); got != want {
			t.Errorf("scpSource(%q) = %v", cmd, got)
		}
	}
}

// scp's source side (same-length carry): a card split by a pause in the
// stream is masked on both sides of the pause, and lengths are kept.
func TestCarrySameLengthPause(t *testing.T) {
	om, err := newOutputMask(testMasker{policy.NewMaskerWithKey(make([]byte, 32))}, &model.MaskSpec{Rules: []model.MaskRule{{
		Rule: "pii", Live: true, Detectors: []string{"email", "card"}}}})
	if err != nil {
		t.Fatal(err)
	}
	om.sameLength = true
	om.ruleOf[boundaryDetector] = "pii"
	c := carry{om: om}
	var got []byte
	for _, step := range []struct {
		p    string
		mode releaseMode
	}{{"C0644 40 f\nline one\ncard 4111 11", releaseMore}, {"", releaseTimeout}, {"11 1111 1111 end\n", releaseMore}, {"\x00", releaseFinal}} {
		_, live, _ := c.next([]byte(step.p), step.mode)
		got = append(got, live...)
	}
	want := "C0644 40 f\nline one\ncard ******************* end\n\x00"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
