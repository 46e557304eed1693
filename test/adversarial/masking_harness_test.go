package adversarial

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
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// The masking suite (issue 11): masking that fails closed. Every case is
// an attempt by the watched session to get a masked value, or anything
// computed from it, past interlock. The contract of every case:
//
//   - no original and no reversible form of one (see masking_scan_test.go)
//     reaches the client: rows, errors and notices with all their fields,
//     NOTIFY payloads, ParameterStatus values, column names, COPY data;
//   - none is in the journal's files (the SQLite file, its -wal and -shm,
//     scanned while interlock runs and after), in its decoded entries and
//     payloads, nor in an exported bundle (`interlock journal export`,
//     every file of it, payloads decoded) or its OCSF export;
//   - what interlock refuses, it refuses with an error naming a rule
//     (SQLSTATE 42501, `rule "..."`); errors the attack itself provokes on
//     the server (a failed cast, a unique violation, RAISE) are listed by
//     the case, and their text is scanned like any other;
//   - the control run (no interlock) shows the attack works: some form of
//     an original does reach the client directly.
//
// The cases run with class 11 and names beginning "m-":
//
//	sudo CI=true go test -count=1 ./test/adversarial/ -run 'TestAdversarial/(control-)?m-' -v

// mPolicy masks the two columns and runs every detector; everything else
// is allowed, so every attack reaches the server.
const mPolicy = `
  default: allow
  rules:
    - name: pii
      match: {targets: [db]}
      action: mask
      mask:
        columns: [customers.email, customers.card]
        detectors: [email, card, national_id, cloud_key, token, private_key]
`

// mTarget records result rows: the recorded copy must be masked too.
const mTarget = `
record_results: rows
record_rows_max: 1000
`

// mSetup is the masking cases' data, created by the role before the run.
var mSetup = []string{
	"CREATE TABLE customers(id int PRIMARY KEY, name text, email text UNIQUE, card text, note text)",
	fmt.Sprintf("INSERT INTO customers VALUES (1, 'Ada Brennan', '%s', '%s', 'call after five; ssn %s'), "+
		"(2, 'Omar Ekwueme', '%s', '%s', 'aws key %s rotated'), "+
		"(3, 'Lise Thornby', '%s', '%s', 'deploy token %s'), "+
		"(4, 'Ravi Okafor', '%s', '%s', 'prefers post')",
		mEmail1, mCard1, mSSN1, mEmail2, mCard2, mAWS1, mEmail3, mCard3, mGitHub, mEmail4, mCard4),
	"CREATE TABLE tickets(id int PRIMARY KEY, body text)",
	fmt.Sprintf("INSERT INTO tickets VALUES (1, 'dispute; ssn %s verified'), (2, %s), (3, %s), (4, 'maps key %s')",
		mSSN2, sqlE(mPEM), sqlE(mPEMOpen), mGoogle),
	"CREATE TABLE vault(id int PRIMARY KEY, blob bytea, doc jsonb, tags text[])",
	fmt.Sprintf(`INSERT INTO vault VALUES (1, convert_to('backup contact %s card %s', 'UTF8'), '{"owner": "%s", "aws": "%s"}', ARRAY['%s', 'ssn %s'])`,
		mVaultEmail, mVaultCard, mVaultEmail, mAWS2, mSlack, mSSN2),
}

// sqlE is s as an escape string constant (E'...').
func sqlE(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, "'", "''", "\n", `\n`).Replace(s) + "'"
}

// mspec is one masking case.
type mspec struct {
	name  string
	super []string
	setup []string
	// codes are the SQLSTATEs the attack itself provokes on the server.
	codes []string
	run   func(c *caseRun)
	// policy replaces mPolicy.
	policy string
}

func mcase(sp mspec) advCase {
	pol := mPolicy
	if sp.policy != "" {
		pol = sp.policy
	}
	return advCase{
		name: "m-" + sp.name, class: 11, super: sp.super, setup: append(append([]string{}, mSetup...), sp.setup...),
		policy: pol, targetYAML: mTarget, mode: harmless,
		run: func(c *caseRun) {
			sp.run(c)
			if !c.direct {
				mSnapshot(c)
			}
		},
		effect: mLeaks(sp.codes),
		check:  mErrors(sp.codes),
	}
}

// mState is what the masking suite keeps about a run beside the harness.
type mState struct {
	// labels say what each reply (by its index in caseRun.replies)
	// answered.
	labels map[int]string
	// during are the findings in the journal's files while interlock ran.
	during []mFinding
	once   sync.Once
	result string
}

var mStates sync.Map // *caseRun -> *mState

func mstate(c *caseRun) *mState {
	v, _ := mStates.LoadOrStore(c, &mState{labels: map[int]string{}})
	return v.(*mState)
}

// msendOpts sends msgs on session n and labels the reply.
func msendOpts(c *caseRun, n int, timeout time.Duration, msgs ...rawpg.Msg) rawpg.Reply {
	c.t.Helper()
	for _, m := range msgs {
		if hs := scanFull([]byte(m.SQL)); len(hs) > 0 {
			c.t.Fatalf("case bug: the case's own SQL holds %s: %s", hs[0], m.SQL)
		}
	}
	r := c.sendOpts(n, -1, timeout, msgs...)
	c.mu.Lock()
	mstate(c).labels[len(c.replies)-1] = fmt.Sprintf("session %d: %s", n, short(describeMsgs(msgs), 160))
	c.mu.Unlock()
	return r
}

func msend(c *caseRun, n int, msgs ...rawpg.Msg) rawpg.Reply {
	c.t.Helper()
	return msendOpts(c, n, 20*time.Second, msgs...)
}

// mq sends each statement as a simple Query of its own.
func mq(c *caseRun, n int, sqls ...string) {
	c.t.Helper()
	for _, s := range sqls {
		msend(c, n, q(s))
	}
}

// mExt runs sql over the extended protocol (unnamed statement and
// portal); formats are the result format codes (none: text).
func mExt(c *caseRun, n int, sql string, formats ...int16) rawpg.Reply {
	c.t.Helper()
	b := bind("", "")
	if len(formats) > 0 {
		b = withResultFormats(b, formats...)
	}
	return msend(c, n, parse("", sql), b, describeP(""), execute("", 0), syncMsg())
}

// mAll runs each statement three ways: a simple Query, the extended
// protocol with text results, and with binary results.
func mAll(c *caseRun, sqls ...string) {
	c.t.Helper()
	for _, s := range sqls {
		msend(c, 0, q(s))
		mExt(c, 0, s)
		mExt(c, 0, s, 1)
	}
}

// clientFindings scans every byte the client received.
func clientFindings(c *caseRun) []mFinding {
	st := mstate(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []mFinding
	for i, r := range c.replies {
		label := st.labels[i]
		if label == "" {
			label = fmt.Sprintf("reply %d", i)
		}
		add := func(what string, b []byte) {
			for _, h := range scanFull(b) {
				out = append(out, mFinding{"client: " + what + " answering " + label, h})
			}
		}
		for _, m := range r.Msgs {
			switch m.T {
			case "E", "N":
				what := map[string]string{"E": "ErrorResponse", "N": "NoticeResponse"}[m.T]
				if m.Raw != nil {
					// Every field, each on its own.
					for _, f := range bytes.Split(m.Raw[5:], []byte{0}) {
						if len(f) > 1 {
							add(fmt.Sprintf("%s field %c", what, f[0]), f[1:])
						}
					}
				} else {
					add(what, []byte(m.Message+"\n"+m.Detail))
				}
			case "T":
				for _, f := range m.Fields {
					add("RowDescription column name", []byte(f.Name))
				}
			case "D":
				for _, v := range m.Values {
					if v != nil {
						add("DataRow", []byte(*v))
					}
				}
			case "S":
				add("ParameterStatus "+m.Name, []byte(m.Name+"="+m.Value))
			case "A":
				add("NotificationResponse", []byte(m.Name+"\n"+m.Value))
			case "d":
				add("CopyData", []byte(m.Value))
			default:
				add("message "+m.T, []byte(m.Tag+"\n"+m.Value+"\n"+m.Message+"\n"+m.Detail))
			}
		}
	}
	for i, o := range c.outputs {
		for _, h := range scanFull([]byte(o)) {
			out = append(out, mFinding{fmt.Sprintf("client: psql output %d", i), h})
		}
	}
	return out
}

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

func dedupe(fs []mFinding) []mFinding {
	seen := map[string]bool{}
	var out []mFinding
	for _, f := range fs {
		k := f.where + "\x00" + f.hit.secret + "\x00" + f.hit.form
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}

// mLeaks is the cases' effect: a form of an original reached the client
// (both runs), the journal or an export (interlock runs).
func mLeaks(codes []string) func(c *caseRun) string {
	return func(c *caseRun) string {
		st := mstate(c)
		st.once.Do(func() {
			fs := clientFindings(c)
			if c.direct {
				for _, e := range c.unexpectedErrors(codes, false) {
					c.t.Errorf("case bug: the control run got an error the case does not list: %s %s: %s", e.Severity, e.Code, e.Message)
				}
			} else {
				fs = append(fs, st.during...)
				fs = append(fs, scanFiles(c, "after interlock stopped")...)
				fs = append(fs, entryFindings(c)...)
				fs = append(fs, exportFindings(c)...)
			}
			fs = withoutObjectIDs(c, dedupe(fs))
			if len(fs) == 0 {
				return
			}
			cats, secrets := byCategory(fs)
			if !c.direct {
				// One line per case for reports: MASKING-LEAKS {category: [secrets]}.
				j, _ := json.Marshal(secrets)
				c.t.Logf("MASKING-LEAKS %s", j)
			}
			st.result = fmt.Sprintf("%d form(s) of originals, in %d kinds of place:%s", len(fs), len(cats), summarizeFindings(fs, 8))
		})
		return st.result
	}
}

// unexpectedErrors are the ErrorResponses the client got that are
// neither the attack's own (codes, or 25P02 after one of them) nor a
// refusal naming a rule with SQLSTATE 42501. With own, only those that
// interlock sent (FATAL, or a message about interlock) are listed; the
// others are the server's, a consequence of an earlier refusal (a table
// whose creation was refused does not exist).
func (c *caseRun) unexpectedErrors(codes []string, own bool) []rawpg.Back {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []rawpg.Back
	for _, r := range c.replies {
		for _, e := range r.Errors() {
			fromInterlock := e.Severity == "FATAL" || strings.Contains(strings.ToLower(e.Message), "interlock")
			switch {
			case !fromInterlock && (contains(codes, e.Code) || e.Code == "25P02"):
			case e.Code == "42501" && ruleRE.MatchString(e.Message):
			case own && !fromInterlock:
				c.t.Logf("note: the server answered %s %s %q (after a refusal?)", e.Severity, e.Code, short(e.Message, 200))
			default:
				out = append(out, e)
			}
		}
	}
	return out
}

// mErrors: interlock refuses only with an error naming a rule.
func mErrors(codes []string) func(c *caseRun) {
	return func(c *caseRun) {
		for _, e := range c.unexpectedErrors(codes, true) {
			c.t.Errorf("REFUSED WITHOUT A RULE: the client got %s %s %q (a refusal must be SQLSTATE 42501 naming a rule)", e.Severity, e.Code, short(e.Message, 300))
		}
		// One line per case for reports: what the client got.
		c.mu.Lock()
		rowsN, copyN, notes := 0, 0, 0
		refused := map[string]int{}
		var serverCodes []string
		for _, r := range c.replies {
			for _, m := range r.Msgs {
				switch m.T {
				case "D":
					rowsN++
				case "d":
					copyN++
				case "N", "A":
					notes++
				case "E":
					if sm := ruleRE.FindStringSubmatch(m.Message); sm != nil && m.Code == "42501" {
						refused[sm[1]]++
					} else {
						serverCodes = append(serverCodes, m.Severity+" "+m.Code)
					}
				}
			}
		}
		c.mu.Unlock()
		c.t.Logf("MASKING-OUTCOME rows=%d copy=%d notices+notifications=%d refused=%v other-errors=%v pg.mask=%d",
			rowsN, copyN, notes, refused, serverCodes, c.kindCount(model.KindPGMask))
	}
}

// withoutObjectIDs drops the short pieces of card digits that are the OID of
// an object of the case's database: a fast-path call names its function by
// OID, and an OID of five digits is as likely as not to appear somewhere in
// a sixteen-digit card.
func withoutObjectIDs(c *caseRun, fs []mFinding) []mFinding {
	var pieces []mFinding
	for _, f := range fs {
		if shortDigitPiece.MatchString(f.hit.form) {
			pieces = append(pieces, f)
		}
	}
	if len(pieces) == 0 {
		return fs
	}
	oids := map[string]bool{}
	out := c.sql(`SELECT oid FROM pg_proc WHERE oid >= 16384 UNION ALL SELECT oid FROM pg_class WHERE oid >= 16384 UNION ALL SELECT oid FROM pg_type WHERE oid >= 16384`)
	for _, l := range strings.Fields(out) {
		oids[l] = true
	}
	kept := fs[:0:0]
	for _, f := range fs {
		if shortDigitPiece.MatchString(f.hit.form) && anyDigitRunIn(f.hit.excerpt, oids) {
			c.t.Logf("not a leak: %s at %s is the OID of an object of the database", f.hit.excerpt, f.where)
			continue
		}
		kept = append(kept, f)
	}
	return kept
}

var (
	shortDigitPiece = regexp.MustCompile(`^(reversed )?[4-7] of its digits$`)
	digitRun        = regexp.MustCompile(`[0-9]+`)
)

func anyDigitRunIn(s string, set map[string]bool) bool {
	for _, r := range digitRun.FindAllString(s, -1) {
		if set[r] {
			return true
		}
	}
	return false
}
