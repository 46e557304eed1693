package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a problem with a configuration file. Parse, Load and Validate
// return either one *Error or, when there are several, an errors.Join of
// them in file order; errors.As finds the first.
type Error struct {
	// File is the file name as given to Load or Parse; empty when
	// validating a Config that was not read from a file.
	File string
	// Line is 1-based; 0 when the problem is not on one line (an empty or
	// oversized file, a Config built in code).
	Line int
	// Key is the dotted path of the key, with 0-based list indexes:
	// "journal.sync", "targets[1].address". Empty when the problem is not
	// about one key (a YAML syntax error, an empty file).
	Key string
	// Msg says what is wrong and, where it can, what to write instead.
	Msg string

	err error // underlying error, for errors.Is (fs.ErrNotExist, ...)
}

// Error formats the error as FILE:LINE: KEY: MSG, leaving out the parts that
// are empty or zero.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any (for example fs.ErrNotExist
// from Load).
func (e *Error) Unwrap() error { return e.err }

// maxErrors caps how many errors one file reports; maxCollected caps how
// many are gathered before sorting, so a huge file cannot make a huge list.
const (
	maxErrors    = 20
	maxCollected = 1000
)

// errorList collects errors for one file.
type errorList struct {
	file  string
	errs  []*Error
	lines map[string]int // for add; may be nil
}

// at records an error on an explicit line.
func (l *errorList) at(line int, key, msg string) {
	if len(l.errs) < maxCollected {
		l.errs = append(l.errs, &Error{File: l.file, Line: line, Key: key, Msg: msg})
	}
}

// add records an error about key, on the line that key was read from.
func (l *errorList) add(key, msg string) {
	if len(l.errs) < maxCollected {
		l.at(lineOf(l.lines, key), key, msg)
	}
}

// err returns the errors in file order (those without a line last), at
// most maxErrors of them.
func (l *errorList) err() error {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Line, l.errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	errs := make([]error, 0, maxErrors+1)
	for i, e := range l.errs {
		if i == maxErrors {
			more := strconv.Itoa(len(l.errs) - maxErrors)
			if len(l.errs) == maxCollected {
				more = "at least " + more
			}
			errs = append(errs, &Error{File: l.file, Msg: more + " more errors not shown"})
			break
		}
		errs = append(errs, e)
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}

// covers reports whether an error about key (a decode error that left the
// value at its default) explains a validation error about sub.
func covers(key, sub string) bool {
	return key != "" && (sub == key || strings.HasPrefix(sub, key+".") || strings.HasPrefix(sub, key+"["))
}

// lineOf returns the line key was read from, or failing that the line of
// the nearest enclosing key that was read (a missing key is reported on
// its parent's line).
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// quote quotes a value from the file for a message: escaped, so that it
// cannot forge log lines or terminal output, and cut short if long.
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

// Errorf builds an error about a key of this config that checks outside
// this package found (a CEL condition that does not compile, say), naming
// the file and line like Validate's errors.
func (c *Config) Errorf(key, format string, args ...any) *Error {
	return &Error{File: c.Source, Line: lineOf(c.lines, key), Key: key, Msg: fmt.Sprintf(format, args...)}
}
