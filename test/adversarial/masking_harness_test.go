package adversarial

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

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
