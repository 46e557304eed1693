package textview

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"sudo -n true", "sudo -n true"},
		{"a\nb", `a\nb`},
		{"x\x1b[2Ky", `x\x1b[2Ky`},
		{"\r\t\x00\x7f", `\r\t\x00\x7f`},
		{"\xff\xfe", `\xff\xfe`},
		{`back\slash`, `back\\slash`},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"zero\u200bwidth\ufeff", `zero\u200bwidth\ufeff`},
		{"c1\u009bm", `c1\u009bm`},
		{"tag\U000E0041", `tag\U000e0041`},
		{"línea ok 日本", "línea ok 日本"},
		{"nbsp\u00a0ok", "nbsp\u00a0ok"},
	} {
		if got := Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.ContainsAny(Escape(c.in), "\x1b\n\r\x00") {
			t.Errorf("Escape(%q) keeps a control byte", c.in)
		}
	}
}

// Two different texts never escape to the same view: the approver cannot
// be shown one text that stands for another.
func TestEscapeInjective(t *testing.T) {
	pairs := [][2]string{{"a\nb", `a\nb`}, {"\x1b", `\x1b`}, {"\u202e", `\u202e`}, {"\xff", `\xff`}}
	for _, p := range pairs {
		if Escape(p[0]) == Escape(p[1]) {
			t.Errorf("%q and %q escape alike: %q", p[0], p[1], Escape(p[0]))
		}
	}
}

func TestCutSaysHowMuch(t *testing.T) {
	s := strings.Repeat("x", 250)
	got := Cut(s, 60)
	if want := strings.Repeat("x", 60) + "… 190 more bytes"; got != want {
		t.Fatalf("Cut = %q, want %q", got, want)
	}
	if Cut("short", 60) != "short" {
		t.Fatal("Cut altered a short text")
	}
	// A cut never splits a rune into an invalid byte shown as \x..
	if got := Cut("ééé", 3); got != "é… 4 more bytes" {
		t.Fatalf("Cut on a rune boundary = %q", got)
	}
}

func TestSummary(t *testing.T) {
	got := Summary("sudo -n true\nrm -rf /tmp/x", 60)
	if want := "sudo -n true (+1 line, 14 more bytes)"; got != want {
		t.Fatalf("Summary = %q, want %q", got, want)
	}
	if got := Summary("a\nb\nc\n", 60); got != "a (+3 lines, 5 more bytes)" {
		t.Fatalf("Summary = %q", got)
	}
	// A trailing newline is a line and a byte the view says it left out.
	if got := Summary("ls\n", 60); got != "ls (+1 line, 1 more byte)" {
		t.Fatalf("Summary = %q", got)
	}
}

func TestLines(t *testing.T) {
	got := Lines("sudo -n true\n\x1b[8mrm -rf /\r\tx")
	want := []string{"1| sudo -n true", "2| \\x1b[8mrm -rf /\\r\tx"}
	if len(got) != len(want) {
		t.Fatalf("Lines = %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
	if got := Lines("a\n"); len(got) != 2 || got[1] != "2| " {
		t.Errorf("a trailing newline is not shown: %q", got)
	}
}

func TestCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")",
		"+1":                "'+1",
		"-1":                "'-1",
		"@SUM(A1)":          "'@SUM(A1)",
		"select 1":          "select 1",
		"\tx":               `\tx`,
	} {
		if got := CSVCell(in); got != want {
			t.Errorf("CSVCell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHash(t *testing.T) {
	// sha256("") is well known; the hash is of the exact bytes.
	if Hash("") != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal("Hash is not SHA-256 hex")
	}
	if Hash("a\n") == Hash("a") {
		t.Fatal("Hash ignores a newline")
	}
}

func TestEscapeMultiline(t *testing.T) {
	got := EscapeMultiline("a\r\n\x1b[2Jb\n\u202ec")
	if want := "a\\r\n\\x1b[2Jb\n\\u202ec"; got != want {
		t.Fatalf("EscapeMultiline = %q, want %q", got, want)
	}
}
