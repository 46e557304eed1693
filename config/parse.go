package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// maxFileSize is the largest configuration file Load and Parse accept.
const maxFileSize = 1 << 20

// Load reads the configuration file at path. With path "", it reads
// DefaultPath if that file exists and otherwise returns Default() (with an
// empty Source). A path given explicitly must exist.
func Load(path string) (*Config, error) {
	return load(path, DefaultPath)
}

func load(path, defaultPath string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = defaultPath
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !explicit {
				if _, lerr := os.Lstat(path); lerr == nil {
					return nil, &Error{File: path, Msg: "is a symbolic link to a file that does not exist; fix or remove the link", err: err}
				}
				return Default(), nil
			}
			return nil, &Error{File: path, Msg: "config file does not exist; create it (every key is optional, " +
				"see docs/config.md), or give no path to use " + DefaultPath + " if it exists and the built-in defaults otherwise", err: err}
		}
		return nil, &Error{File: path, Msg: "cannot open: " + unwrapPathError(err), err: err}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory; give the path of the configuration file"}
	} else if err == nil {
		if msg := unsafeOwnership(fi); msg != "" {
			return nil, &Error{File: path, Msg: msg}
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + unwrapPathError(err), err: err}
	}
	return Parse(path, data)
}

// unsafeOwnership refuses, when interlock runs as root, a config file that
// someone other than root could have written: whoever can edit it can
// drop targets or set fail: open, that is, turn interception off.
func unsafeOwnership(fi fs.FileInfo) string {
	if os.Geteuid() != 0 {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if st.Uid != 0 {
		return fmt.Sprintf("is owned by uid %d, not root; anyone who can edit it can switch interception off: chown root %s", st.Uid, fi.Name())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("is writable by group or others (mode %04o); anyone who can edit it can switch interception off: chmod go-w %s", fi.Mode().Perm(), fi.Name())
	}
	return ""
}

func unwrapPathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse reads a configuration from data: a YAML document holding one
// mapping. Keys it leaves out keep their defaults. name is the file name
// to use in errors and becomes Config.Source. The result has passed
// Validate.
func Parse(name string, data []byte) (*Config, error) {
	if len(data) > maxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("is larger than %d bytes (1 MiB), the limit for a configuration file", maxFileSize)}
	}
	// The parser may place an empty value, or the end of the file, on
	// the line after the last one.
	last := lastLine(data)
	root, yerr := parseYAML(name, data)
	if yerr != nil {
		yerr.Line = min(yerr.Line, last)
		return nil, yerr
	}
	cfg := Default()
	cfg.Source = name
	d := &decoder{errorList: errorList{file: name}, lines: map[string]int{}, explained: map[string]bool{}}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "", root.Line)
	cfg.lines = d.lines

	// Validate even after decoding errors, so that one run reports every
	// problem, but leave out what a decoding error explains: a target
	// whose name had the wrong type is not also missing its name.
	v := &errorList{file: name, lines: d.lines}
	cfg.validate(v)
	all := d.errorList
next:
	for _, e := range v.errs {
		if d.explained[e.Key] {
			continue
		}
		for _, de := range d.errs {
			if covers(de.Key, e.Key) {
				continue next
			}
		}
		all.errs = append(all.errs, e)
	}
	for _, e := range all.errs {
		e.Line = min(e.Line, last)
	}
	if err := all.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// lastLine returns the number of the last line of data, not counting an
// empty line after a final line break.
func lastLine(data []byte) int {
	lines := yamlLines(data)
	if n := len(lines); n > 1 && len(lines[n-1]) == 0 {
		return n - 1
	}
	return len(lines)
}

// parseYAML returns the top-level mapping node of the single document in
// data.
func parseYAML(name string, data []byte) (root *yaml.Node, err *Error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &Error{File: name, Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "holds no configuration (it is empty or only comments); " +
				"write at least one key, or {} to use the built-in defaults"}
		}
		return nil, syntaxError(name, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(name, data, err)
	default:
		return nil, &Error{File: name, Line: next.Line, Msg: "a second YAML document starts here; " +
			"a configuration file holds one (remove the \"---\" line and what follows, or merge it into the first)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{File: name, Line: doc.Line, Msg: "holds no configuration"}
	}
	root = doc.Content[0]
	if root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if isNull(root) && root.Value == "" {
		return nil, &Error{File: name, Line: doc.Line, Msg: "holds an empty document; write at least one key, or {} to use the built-in defaults"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Msg: "the top level must be a mapping of keys " +
			"(journal, intercept, control, bpf, log, targets), not " + describe(root)}
	}
	return root, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decoder copies a YAML node tree into a Config, checking every key
// against the `yaml` tags of the struct it lands in and every value
// against the Go type, and remembering which line each key came from.
type decoder struct {
	errorList
	lines map[string]int
	// explained holds keys that an error already accounts for: the key an
	// unknown key was probably meant to be.
	explained map[string]bool
}

var durationType = reflect.TypeOf(Duration(0))

// decode stores n into v. key is n's dotted path; line is where an error
// about n as a whole is reported (the line of its key, or of the alias).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string, line int) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.at(line, key, "alias to nothing")
			return
		}
		n = n.Alias
	}
	if tag := n.ShortTag(); tag != "" && !strings.HasPrefix(tag, "!!") {
		d.at(line, key, "custom YAML tags such as "+quote(tag)+" are not supported")
		return
	}
	switch {
	case v.Type() == durationType:
		s, ok := d.scalar(n, key, line, "a duration such as 10ms")
		if !ok {
			return
		}
		dur, msg := parseDuration(s)
		if msg != "" {
			d.at(line, key, msg)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		if s, ok := d.scalar(n, key, line, "a string"); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		s, ok := d.scalar(n, key, line, "a whole number")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n.ShortTag() != "!!int" {
			d.at(line, key, quote(s)+" is not a whole number")
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Bool:
		s, ok := d.scalar(n, key, line, "true or false")
		if !ok {
			return
		}
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.at(line, key, quote(s)+" is not true or false")
		}
	case v.Kind() == reflect.Pointer && (v.Type().Elem().Kind() == reflect.Bool || v.Type().Elem().Kind() == reflect.Int64):
		// An optional yes/no or number: absent means "not asked".
		if isNull(n) {
			return
		}
		b := reflect.New(v.Type().Elem())
		d.decode(n, b.Elem(), key, line)
		v.Set(b)
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		// An optional section: present in the file means set.
		if isNull(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.mapping(n, v.Elem(), key, line)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, key, line)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, key, line)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		d.stringMap(n, v, key, line)
	default:
		// Only reachable if the schema gains a type this walker lacks.
		panic("config: no decoder for " + v.Type().String())
	}
}

// scalar returns n's text if n is a non-null scalar.
func (d *decoder) scalar(n *yaml.Node, key string, line int, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.at(line, key, "must be "+want+", not "+describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!null":
		d.at(line, key, "has no value; write "+want+", or remove the key to use the default")
		return "", false
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return n.Value, true
	default:
		d.at(line, key, "must be "+want+", not a "+strings.TrimPrefix(n.ShortTag(), "!!")+" value")
		return "", false
	}
}

// mapping decodes a YAML mapping into the struct v. A null value leaves v
// as it is (the defaults).
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string, line int) {
	if isNull(n) {
		return
	}
	fields := yamlFields(v.Type())
	if n.Kind != yaml.MappingNode {
		d.at(line, key, "must be a mapping of keys ("+strings.Join(sortedKeys(fields), ", ")+"), not "+describe(n))
		return
	}
	seen := map[string]int{}
	var guesses []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			d.at(kn.Line, key, "a key must be a plain name, not "+describe(kn))
			continue
		}
		name := kn.Value
		child := joinKey(key, name)
		if kn.ShortTag() == "!!merge" {
			d.at(kn.Line, child, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[name]; dup {
			d.at(kn.Line, child, fmt.Sprintf("duplicate key (first set on line %d); remove one", first))
			continue
		}
		seen[name] = kn.Line
		idx, ok := fields[name]
		if !ok {
			msg, guess := unknownKeyMsg(name, fields)
			d.at(kn.Line, child, msg)
			if guess != "" {
				guesses = append(guesses, guess)
			}
			continue
		}
		vline := kn.Line
		if vn.Kind == yaml.ScalarNode && vn.Value != "" {
			vline = vn.Line // a value may sit on the line after its key
		}
		d.lines[child] = vline
		d.decode(vn, v.Field(idx), child, vline)
	}
	for _, g := range guesses {
		if _, set := seen[g]; !set {
			// A misspelt key is not also missing.
			d.explained[joinKey(key, g)] = true
		}
	}
}

// stringMap decodes a YAML mapping of names to strings (such as
// identity.verified) into the map v. Its keys are the file's to choose:
// validation, not the schema, says which are known.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, key string, line int) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.at(line, key, "must be a mapping of names to values (name: value), not "+describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind != yaml.ScalarNode || kn.ShortTag() == "!!merge" {
			d.at(kn.Line, key, "a key must be a plain name, not "+describe(kn))
			continue
		}
		child := joinKey(key, kn.Value)
		if first, dup := seen[kn.Value]; dup {
			d.at(kn.Line, child, fmt.Sprintf("duplicate key (first set on line %d); remove one", first))
			continue
		}
		seen[kn.Value] = kn.Line
		d.lines[child] = kn.Line
		s, ok := d.scalar(vn, child, kn.Line, "a string")
		if !ok {
			continue
		}
		m.SetMapIndex(reflect.ValueOf(kn.Value).Convert(v.Type().Key()), reflect.ValueOf(s).Convert(v.Type().Elem()))
	}
	v.Set(m)
}

// sequence decodes a YAML sequence into the slice v, replacing its
// contents. A null value means an empty list.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, key string, line int) {
	if isNull(n) {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.at(line, key, "must be a list (items on lines starting with \"- \", or [a, b]), not "+describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		child := key + "[" + strconv.Itoa(i) + "]"
		d.lines[child] = item.Line
		if isNull(item) {
			d.at(item.Line, child, "is an empty list item; fill it in or remove its \"-\"")
			continue
		}
		d.decode(item, s.Index(i), child, item.Line)
	}
	v.Set(s)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's kind for a message.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "an empty value"
		case "!!str":
			return "the string " + quote(n.Value)
		}
		return "the value " + quote(n.Value)
	}
	return "an unexpected YAML node"
}

// yamlFields maps the yaml tag names of t's fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		m[name] = i
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// unknownKeyMsg returns the message for an unknown key and the known key
// it suggests instead, if any.
func unknownKeyMsg(name string, fields map[string]int) (msg, guess string) {
	keys := sortedKeys(fields)
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editDistance(strings.ToLower(name), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	msg = "unknown key"
	if best != "" {
		msg += "; did you mean " + best + "?"
	}
	return msg + " (known keys here: " + strings.Join(keys, ", ") + ")", best
}

// editDistance is the Levenshtein distance, giving up (returning a large
// value) for long strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinKey appends name to a dotted key path, quoting names that would make
// the path ambiguous or unreadable.
func joinKey(parent, name string) string {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, ".[]\"' ") || strconv.Quote(name) != `"`+name+`"` {
		name = quote(name)
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}
