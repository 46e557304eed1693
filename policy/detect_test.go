package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
)

func TestDetectors(t *testing.T) {
	ghp := "ghp_" + strings.Repeat("a1", 18)
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	cases := []struct {
		detector, text string
		want           []string // the matched substrings
	}{
		{"email", "write to jane.doe+ci@example.co.uk today", []string{"jane.doe+ci@example.co.uk"}},
		{"email", "user@localhost and a@b", nil},
		{"email", "mailto:jane@example.com;x", []string{"jane@example.com"}},

		{"card", "visa 4111 1111 1111 1111, amex 378282246310005", []string{"4111 1111 1111 1111", "378282246310005"}},
		{"card", "mc 5555555555554444 and 2223003122003222", []string{"5555555555554444", "2223003122003222"}},
		{"card", "4111111111111112", nil},               // Luhn fails
		{"card", "1732612345678 1732612345678901", nil}, // epoch milliseconds, microseconds: no issuer
		{"card", "order 0000000000000000", nil},         // no issuer
		{"card", "9999999999999995", nil},               // passes Luhn, no issuer
		// Glued to words, and with every common separator.
		{"card", "x4111111111111111y", []string{"4111111111111111"}},
		{"card", "ORD4111111111111111", []string{"4111111111111111"}},
		{"card", "card=4111111111111111&exp=1225", []string{"4111111111111111"}},
		{"card", "4111.1111.1111.1111", []string{"4111.1111.1111.1111"}},
		{"card", "4111/1111/1111/1111", []string{"4111/1111/1111/1111"}},
		{"card", "card_4111_1111_1111_1111_end", []string{"4111_1111_1111_1111"}},
		{"card", "4111 - 1111 - 1111 - 1111", []string{"4111 - 1111 - 1111 - 1111"}},
		{"card", "amex 3782 822463 10005, 3782-822463-10005", []string{"3782 822463 10005", "3782-822463-10005"}},
		{"card", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", []string{"4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"}},
		{"card", "41 11 11 11 11 11 11 11", []string{"41 11 11 11 11 11 11 11"}},
		// Beside other numbers of the same run.
		{"card", "4111 1111 1111 1111 123", []string{"4111 1111 1111 1111"}},
		{"card", "2026-11-26 4111-1111-1111-1111", []string{"4111-1111-1111-1111"}},
		{"card", "exp 12/25 cvv 123 4111 1111 1111 1111", []string{"4111 1111 1111 1111"}},
		{"card", `{"card":"4111111111111111","n":1}`, []string{"4111111111111111"}},
		{"card", "4111111111111111.00", []string{"4111111111111111"}},
		// Look-alikes.
		{"card", "x1732612345678y 17326123456789", nil},
		{"card", "41111111111111111 14111111111111111", nil}, // 17 digits; a card glued to a digit
		{"card", "0.4111111111111111 3.4111111111111111", nil},
		{"card", "Mem: 24033 1234 20000 12 2799 22450", nil},
		{"card", "41111111-1111-1111-1111-111111111111", nil}, // a UUID
		{"card", "4.111.111.111.111.111 and 4111 1111-1111 1111", nil},
		{"card", "ip 192.168.100.200 v 2026.11.26.1111", nil},

		{"national_id", "ssn 123-45-6789 or 000-12-3456 or 666-12-3456 or 123-00-4567 or 901-12-3456 or 123-45-0000", []string{"123-45-6789"}},
		{"national_id", "123 45 6789|123.45.6789|123_45_6789|123/45/6789", []string{"123 45 6789", "123.45.6789", "123_45_6789", "123/45/6789"}},
		{"national_id", "x123-45-6789y", []string{"123-45-6789"}},
		{"national_id", "2026-11-26 123-45-6789", []string{"123-45-6789"}},
		{"national_id", "SSN: 123456789", []string{"123456789"}},
		{"national_id", `{"ssn": 123456789}`, []string{"123456789"}},
		{"national_id", "user_ssn=123456789", []string{"123456789"}},
		{"national_id", "Social Security Number 123456789", []string{"123456789"}},
		{"national_id", "id 123456789, classname 123456789, ssn 666456789", nil},
		{"national_id", "1-123-45-6789 123-45-6789-0 123-45 6789 +49 171 23 4567 555-123-4567 12345-6789", nil},

		{"cloud_key", "key=AKIAIOSFODNN7EXAMPLE other=AKIA123", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{"cloud_key", "=AKIAIOSFODNN7EXAMPLE xASIAIOSFODNN7EXAMPLE key_AROAIOSFODNN7EXAMPLEXYZ", []string{"AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", "AROAIOSFODNN7EXAMPLE"}},
		{"cloud_key", "k=AIza" + strings.Repeat("b_-9", 9)[:35] + "\n", []string{"AIza" + strings.Repeat("b_-9", 9)[:35]}},
		{"cloud_key", "AKIAiosfodnn7example AKIAIOSFODNN1EXAMPLE AIza123", nil},

		{"token", "token " + ghp + " xoxb-1234567890-abcdefghij", []string{ghp, "xoxb-1234567890-abcdefghij"}},
		{"token", "jwt " + jwt, []string{jwt}},
		{"token", "x" + ghp + "y", []string{ghp + "y"}},
		{"token", "Authorization:Bearer" + jwt, []string{jwt}},
		{"token", "abcxoxp-1234567890-abcdefghij", []string{"xoxp-1234567890-abcdefghij"}},
		{"token", "key=mysk_live_" + strings.Repeat("Ab1", 8), []string{"sk_live_" + strings.Repeat("Ab1", 8)}},
		{"token", "rk_test_" + strings.Repeat("Z", 30), []string{"rk_test_" + strings.Repeat("Z", 30)}},
		{"token", "pat=github_pat_" + strings.Repeat("a_B", 8), []string{"github_pat_" + strings.Repeat("a_B", 8)}},
		{"token", "ghp_short sk_live_short xoxb-short eyJhbGciOi.eyJ.xxxx my_ghp_name", nil},

		{"private_key", "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\nbnNz\n-----END OPENSSH PRIVATE KEY-----\ny", []string{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\nbnNz\n-----END OPENSSH PRIVATE KEY-----"}},
		{"private_key", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", nil},
		// Truncated: from the BEGIN line to the end of the value.
		{"private_key", "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEow", []string{"-----BEGIN RSA PRIVATE KEY-----\nMIIEow"}},
		{"private_key", "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIV", []string{"-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIV"}},
		{"private_key", `{"k":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}`, []string{`-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----`}},
		{"private_key", "x-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOY\n-----END PGP PRIVATE KEY BLOCK-----", []string{"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOY\n-----END PGP PRIVATE KEY BLOCK-----"}},
		{"private_key", "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY----- and -----BEGIN PRIVATE KEY-----\nBB",
			[]string{"-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----\nBB"}},
		// Markers rewritten by the statement: spaces taken out, dashes
		// turned into spaces, lower case, reversed.
		{"private_key", "a -----BEGINRSAPRIVATEKEY-----\nQkJC\n-----ENDRSAPRIVATEKEY----- b", []string{"-----BEGINRSAPRIVATEKEY-----\nQkJC\n-----ENDRSAPRIVATEKEY-----"}},
		{"private_key", "a      BEGIN PRIVATE KEY     \nQkJC\n     END PRIVATE KEY      b", []string{"BEGIN PRIVATE KEY     \nQkJC\n     END PRIVATE KEY"}},
		{"private_key", "--begin openssh private key--\nqkjc", []string{"--begin openssh private key--\nqkjc"}},
		{"private_key", "a-----YEK ETAVIRP DNE-----\nCJkQ\n-----YEK ETAVIRP ASR NIGEB----- b", []string{"a-----YEK ETAVIRP DNE-----\nCJkQ\n-----YEK ETAVIRP ASR NIGEB-----"}},
		{"private_key", "CJkQ\n-----YEK ETAVIRP NIGEB-----", []string{"CJkQ\n-----YEK ETAVIRP NIGEB-----"}},
		// Prose is not a marker; public keys are not private ones.
		{"private_key", "Begin by generating a private key for the server.", nil},
		{"private_key", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----", nil},
		// DER without markers.
		{"private_key", "k=MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u rest", []string{"MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u"}},
		{"private_key", "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oOYzBzEdKEb8oAoGCCqGSM49", []string{"MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oOYzBzEdKEb8oAoGCCqGSM49"}},
		{"private_key", "cert MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQG", nil},
	}
	for _, c := range cases {
		fs := Detect([]string{c.detector}, []byte(c.text))
		var got []string
		for _, f := range fs {
			got = append(got, c.text[f.Start:f.End])
			if f.Detector != c.detector {
				t.Errorf("%q: finding of %q", c.text, f.Detector)
			}
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
	// A card merged with another finding shows no digits: they could be
	// the other secret's.
	text = "4111111111111111x@a1234.com"
	fs = Detect([]string{"card", "email"}, []byte(text))
	if got := string(redact([]byte(text), fs)); got != "***@***" && got != "****-****-****-****" {
		t.Errorf("merged finding redacted as %q", got)
	}
}

// TestDetectorNames ties the detectors to the names the config accepts.
func TestDetectorNames(t *testing.T) {
	if !slices.Equal(MaskDetectorNames(), config.MaskDetectors()) {
		t.Errorf("policy detectors %v, config accepts %v", MaskDetectorNames(), config.MaskDetectors())
	}
	for _, n := range MaskDetectorNames() {
		if d := detectors[n]; d == nil || d.name != n {
			t.Errorf("detector %q missing", n)
		}
	}
}

// TestCardsInLongRuns: a run of more numbers than maxGroups is read in
// pieces, and a card after the first piece is still found.
func TestCardsInLongRuns(t *testing.T) {
	text := strings.Repeat("1 ", 100) + "4111 1111 1111 1111"
	fs := Detect([]string{"card"}, []byte(text))
	if len(fs) != 1 || text[fs[0].Start:fs[0].End] != "4111 1111 1111 1111" {
		t.Errorf("found %+v", fs)
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

func BenchmarkDetectCard(b *testing.B) {
	v := []byte("4111 1111 1111 1111")
	ds := lookupDetectors([]string{"card"})
	var fs []Finding
	b.SetBytes(int64(len(v)))
	for i := 0; i < b.N; i++ {
		if fs = detectInto(fs[:0], ds, v); len(fs) != 1 {
			b.Fatal("not found")
		}
	}
}

// TestEmailWindowsMatchTheExpression: the windowed email scan finds what
// the expression finds over the whole value.
func TestEmailWindowsMatchTheExpression(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab1.-_+%@@ \nxyz.comCO9")
	for n := 0; n < 20000; n++ {
		v := make([]byte, rng.IntN(200))
		for i := range v {
			v[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(4) == 0 {
			v = append(v, []byte(" "+strings.Repeat("l", rng.IntN(80))+"@exa-mple.co.uk")...)
		}
		var want []Finding
		for _, loc := range emailRE.FindAllIndex(v, -1) {
			want = append(want, Finding{Start: loc[0], End: loc[1]})
		}
		got := findEmails(v, 0, nil)
		if len(got) != len(want) {
			t.Fatalf("%q: got %v, want %v", v, got, want)
		}
		for i := range got {
			if got[i].Start != want[i].Start || got[i].End != want[i].End {
				t.Fatalf("%q: got %v, want %v", v, got, want)
			}
		}
	}
}
