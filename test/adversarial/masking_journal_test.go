package adversarial

// Where the masking cases look for originals besides the client's
// replies: the journal's files (while interlock runs and after it
// stopped), its decoded entries, and its exports (every file of a bundle,
// and OCSF).

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/interlock/interlock/journal"
)

// journalFiles are the files of the journals of the case's runs.
func journalFiles(c *caseRun) []string {
	paths := []string{c.journalPath}
	for _, p := range c.jobs {
		if p.journalPath != c.journalPath {
			paths = append(paths, p.journalPath)
		}
	}
	var out []string
	for _, p := range paths {
		for _, suf := range []string{"", "-wal", "-shm", "-journal"} {
			if _, err := os.Stat(p + suf); err == nil {
				out = append(out, p+suf)
			}
		}
	}
	return out
}

func scanFiles(c *caseRun, when string) []mFinding {
	var out []mFinding
	for _, f := range journalFiles(c) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, h := range scanRaw(b) {
			out = append(out, mFinding{fmt.Sprintf("journal file %s (%s)", filepath.Base(f), when), h})
		}
	}
	return out
}

// mSnapshot scans the journal's files while interlock still runs (its
// -wal and -shm files may be gone once it has stopped).
func mSnapshot(c *caseRun) {
	// Results are posted to the journal after the client has them.
	time.Sleep(300 * time.Millisecond)
	st := mstate(c)
	st.during = scanFiles(c, "while interlock ran")
}

// walkJSON calls fn for every string (and object key) of a JSON text.
func walkJSON(b []byte, fn func(path, s string)) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				fn(path+"."+k+" (key)", k)
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range x {
				walk(path+"[]", e)
			}
		case string:
			fn(path, x)
		}
	}
	walk("", v)
	return nil
}

// hexish: a hash, an id; scanned raw (its digits are not numbers).
func hexish(s string) bool {
	if len(s) < 16 {
		return false
	}
	return strings.Trim(s, "0123456789abcdefABCDEF") == ""
}

// dataKeys are the JSON keys (of journal entries and OCSF events) whose
// strings carry data: SQL, parameter values, errors, column names,
// reasons. Short pieces of card digits are looked for only in them (and
// in payloads); elsewhere pids, ports and counts would match by chance.
var dataKeys = map[string]bool{
	"sql": true, "prepared_sql": true, "value": true, "reason": true, "tag": true, "error": true, "columns": true,
	"column": true, "detail": true, "message": true, "hint": true, "query_string": true, "status_detail": true, "text": true,
}

func dataPath(path string) bool {
	for _, seg := range strings.Split(path, ".") {
		seg = strings.TrimSuffix(strings.TrimSuffix(seg, " (key)"), "[]")
		if dataKeys[seg] {
			return true
		}
	}
	return false
}

func scanString(path, s string, data bool) []mhit {
	if hexish(s) {
		return scanRaw([]byte(s))
	}
	return scanText([]byte(s), data || dataPath(path))
}

// scanJSONText scans the strings of a JSON text; content that is not
// JSON is scanned raw. data: every string carries data (a payload).
func scanJSONText(where string, b []byte, data bool) []mFinding {
	var out []mFinding
	err := walkJSON(b, func(path, s string) {
		for _, h := range scanString(path, s, data) {
			out = append(out, mFinding{where + " " + strings.TrimPrefix(path, "."), h})
		}
	})
	if err != nil {
		for _, h := range scanRaw(b) {
			out = append(out, mFinding{where + " (not JSON)", h})
		}
	}
	return out
}

// entryFindings scans the decoded entries and payloads of the journals.
func entryFindings(c *caseRun) []mFinding {
	paths := []string{c.journalPath}
	for _, p := range c.jobs {
		if p.journalPath != c.journalPath {
			paths = append(paths, p.journalPath)
		}
	}
	var out []mFinding
	for _, p := range paths {
		err := journal.Entries(context.Background(), p, 1, func(en journal.Entry) error {
			where := fmt.Sprintf("journal entry #%d %s", en.Seq, en.Kind)
			out = append(out, scanJSONText(where, en.Body, false)...)
			if en.Payload != nil {
				if json.Valid(en.Payload) {
					out = append(out, scanJSONText(where+" payload", en.Payload, true)...)
				} else {
					for _, h := range scanRaw(en.Payload) {
						out = append(out, mFinding{where + " payload (binary)", h})
					}
				}
			}
			return nil
		})
		if err != nil {
			c.t.Errorf("read the journal %s: %v", p, err)
		}
	}
	return out
}

// exportFindings exports the case's journal (a bundle, and OCSF JSON
// Lines) and scans every file of it.
func exportFindings(c *caseRun) []mFinding {
	var out []mFinding
	bundle := filepath.Join(c.dir, "export.tar.gz")
	if o, e, code := runInterlock("journal", "export", "-c", c.cfgPath, "-o", bundle, "-q"); code != 0 {
		c.t.Errorf("EXPORT FAILED: interlock journal export exited %d: %s %s", code, o, e)
	} else {
		files, err := readBundle(bundle)
		if err != nil {
			c.t.Errorf("EXPORT UNREADABLE: %v", err)
		}
		if len(files) == 0 {
			c.t.Errorf("EXPORT EMPTY: the bundle holds no files")
		}
		for _, name := range sortedNames(files) {
			out = append(out, scanExportFile("export "+name, name, files[name])...)
		}
	}
	ocsf := filepath.Join(c.dir, "export.ocsf.jsonl")
	if o, e, code := runInterlock("journal", "export", "-c", c.cfgPath, "--format", "ocsf", "-o", ocsf, "-q"); code != 0 {
		c.t.Errorf("EXPORT FAILED: interlock journal export --format ocsf exited %d: %s %s", code, o, e)
	} else if b, err := os.ReadFile(ocsf); err == nil {
		out = append(out, scanExportFile("OCSF export", "ocsf.jsonl", b)...)
	}
	return out
}

func sortedNames(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readBundle reads a bundle (tar.gz, or tar) into memory.
func readBundle(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		r = gz
	}
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return out, err
		}
		out[h.Name] = b
	}
}

// scanExportFile scans one file of an export: raw, then by its format
// (JSON Lines and JSON by their strings, payloads decoded; text files in
// full).
func scanExportFile(where, name string, b []byte) []mFinding {
	var out []mFinding
	for _, h := range scanRaw(b) {
		out = append(out, mFinding{where, h})
	}
	switch {
	case strings.HasSuffix(name, ".jsonl"):
		for i, line := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			lw := fmt.Sprintf("%s line %d", where, i+1)
			// payloads.jsonl carries each payload in base64: it is
			// scanned decoded (short pieces would match base64 by chance).
			var p struct {
				Data string `json:"data"`
			}
			var decoded []byte
			if json.Unmarshal(line, &p) == nil && p.Data != "" {
				if d, err := base64.StdEncoding.DecodeString(p.Data); err == nil {
					decoded = d
					line = bytes.Replace(line, []byte(p.Data), nil, 1)
				}
			}
			out = append(out, scanJSONText(lw, line, false)...)
			switch {
			case decoded == nil:
			case json.Valid(decoded):
				out = append(out, scanJSONText(lw+" payload", decoded, true)...)
			default:
				for _, h := range scanRaw(decoded) {
					out = append(out, mFinding{lw + " payload (binary)", h})
				}
			}
		}
	case strings.HasSuffix(name, ".json"):
		out = append(out, scanJSONText(where, b, false)...)
	case strings.HasSuffix(name, ".csv"):
		// By column: short pieces of card digits in the data columns only.
		recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil || len(recs) == 0 {
			out = append(out, scanExportFile(where, name+".txt", b)...)
			break
		}
		for i, rec := range recs[1:] {
			for j, v := range rec {
				col := fmt.Sprint(j)
				if j < len(recs[0]) {
					col = recs[0][j]
				}
				for _, h := range scanText([]byte(v), dataKeys[col] || col == "masked") {
					out = append(out, mFinding{fmt.Sprintf("%s line %d column %s", where, i+2, col), h})
				}
			}
		}
	case strings.HasSuffix(name, ".html"), strings.HasSuffix(name, ".cast"), strings.HasSuffix(name, ".txt"):
		for i, line := range bytes.Split(b, []byte("\n")) {
			for _, h := range scanText(line, false) {
				out = append(out, mFinding{fmt.Sprintf("%s line %d", where, i+1), h})
			}
		}
	}
	return dedupe(out)
}
