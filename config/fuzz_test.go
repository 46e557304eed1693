package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// a well-formed *Error, and that whatever it accepts is valid and survives
// a marshal/parse round trip.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullConfig))
	if b, err := os.ReadFile("../packaging/interlock.yaml"); err == nil {
		f.Add(b)
	}
	for _, tt := range parseErrorTests {
		f.Add([]byte(tt.src))
	}
	for _, s := range []string{
		"{}",
		"targets: &t\n  - *t\n",
		"log: &l {level: info}\ntargets: [*l, *l]\n",
		"a: &a [*a, *a]\n",
		"intercept:\n  cgroups: [/a, /b, /a/b]\n",
		"targets:\n  - {name: a, protocol: tcp, address: '[::1]:1'}\n  - {name: b, protocol: tcp, address: '127.0.0.1:1'}\n",
		"\ufeffjournal:\n  sync: always\n",
		"journal:\r\n  sync: always\r\n",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error")
			}
			checkErrors(t, err, data)
			return
		}
		if cfg.Source != "fuzz.yaml" {
			t.Fatalf("Source = %q", cfg.Source)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		for _, tg := range cfg.Targets {
			if _, _, err := tg.HostPort(); err != nil {
				t.Fatalf("accepted address %q: HostPort: %v", tg.Address, err)
			}
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(parsed(cfg), parsed(again)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", parsed(cfg), parsed(again))
		}
	})
}

// checkErrors checks that err is one *Error or a join of them, each naming
// the file and a line that exists.
func checkErrors(t *testing.T, err error, data []byte) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
		if len(errs) < 2 || len(errs) > maxErrors+1 {
			t.Fatalf("joined %d errors", len(errs))
		}
	}
	// YAML ends lines at \n, \r\n, \r, U+0085, U+2028 and U+2029.
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	lines := 1 + strings.Count(text, "\n") + strings.Count(text, "\r") +
		strings.Count(text, "\u0085") + strings.Count(text, "\u2028") + strings.Count(text, "\u2029")
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) || ce != e {
			t.Fatalf("error %v (%T) is not a *Error", e, e)
		}
		if ce.File != "fuzz.yaml" || ce.Line < 0 || ce.Line > lines || ce.Msg == "" {
			t.Fatalf("bad error %+v (file has %d lines)", ce, lines)
		}
		if !strings.HasPrefix(ce.Error(), "fuzz.yaml") {
			t.Fatalf("Error() = %q", ce.Error())
		}
	}
}
