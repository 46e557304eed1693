package config

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in the file as a Go duration string
// such as "10ms", "250ms" or "1s". Convert with time.Duration(d).
type Duration time.Duration

// String formats d like time.Duration does ("10ms").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a duration string, so that JSON and YAML output
// read the same as the file.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, msg := parseDuration(string(b))
	if msg != "" {
		return errors.New(msg)
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a scalar duration string, for code that decodes a
// Duration with yaml.v3 directly. (Parse does not go through it.)
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return fmt.Errorf("line %d: a duration must be a string such as 10ms", n.Line)
	}
	v, msg := parseDuration(n.Value)
	if msg != "" {
		return fmt.Errorf("line %d: %s", n.Line, msg)
	}
	*d = v
	return nil
}

// parseDuration returns the duration, or a message for the user.
func parseDuration(s string) (Duration, string) {
	v, err := time.ParseDuration(s)
	if err == nil {
		return Duration(v), ""
	}
	if s != "" && len(s) <= 12 && isDigits(s) {
		return 0, fmt.Sprintf("%s has no unit; write for example %sms or %ss", quote(s), s, s)
	}
	return 0, fmt.Sprintf("%s is not a duration; write for example 10ms, 250ms or 1s", quote(s))
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
