package policy

import (
	"strings"
	"testing"
)

func TestDetectors(t *testing.T) {
	cases := []struct {
		detector, text string
		want           []string // the matched substrings
	}{
		{"email", "write to jane.doe+ci@example.co.uk today", []string{"jane.doe+ci@example.co.uk"}},
		{"email", "user@localhost and a@b", nil},
		{"card", "visa 4111 1111 1111 1111, amex 378282246310005", []string{"4111 1111 1111 1111", "378282246310005"}},
		{"card", "mc 5555555555554444 and 2223003122003222", []string{"5555555555554444", "2223003122003222"}},
		{"card", "4111111111111112", nil},               // Luhn fails
		{"card", "1732612345678 1732612345678901", nil}, // epoch milliseconds, microseconds: no issuer
		{"card", "order 0000000000000000", nil},         // no issuer
		{"card", "9999999999999995", nil},               // passes Luhn, no issuer
		{"national_id", "ssn 123-45-6789 or 000-12-3456 or 666-12-3456 or 123-00-4567", []string{"123-45-6789"}},
		{"cloud_key", "key=AKIAIOSFODNN7EXAMPLE other=AKIA123", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{"token", "token ghp_" + strings.Repeat("a", 36) + " xoxb-1234567890-abcdefghij", []string{"ghp_" + strings.Repeat("a", 36), "xoxb-1234567890-abcdefghij"}},
		{"token", "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", []string{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}},
		{"private_key", "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\nbnNz\n-----END OPENSSH PRIVATE KEY-----\ny", []string{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\nbnNz\n-----END OPENSSH PRIVATE KEY-----"}},
		{"private_key", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", nil},
	}
	for _, c := range cases {
		fs := Detect([]string{c.detector}, []byte(c.text))
		var got []string
		for _, f := range fs {
			got = append(got, c.text[f.Start:f.End])
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s in %q: found %q, want %q", c.detector, c.text, got, c.want)
		}
	}
}

func TestDetectOverlaps(t *testing.T) {
	// An email whose local part is digits that look like a card.
	text := "4111111111111111@example.com"
	fs := Detect([]string{"card", "email"}, []byte(text))
	if len(fs) != 1 || fs[0].Start != 0 || fs[0].End != len(text) {
		t.Errorf("overlapping findings not merged: %+v", fs)
	}
}

func BenchmarkDetectAllOnPlainText(b *testing.B) {
	v := []byte("an ordinary comment about order 12345 shipped on 2026-11-26 to the warehouse")
	names := MaskDetectorNames()
	b.SetBytes(int64(len(v)))
	for i := 0; i < b.N; i++ {
		if len(Detect(names, v)) != 0 {
			b.Fatal("false positive")
		}
	}
}
