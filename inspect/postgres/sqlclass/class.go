// Package sqlclass classifies PostgreSQL statements with PostgreSQL's own
// parser (pg_query_go): each statement's kind, the kinds nested in it, the
// relations, functions, operators and types it names, and whether its text
// shows that it only reads. It knows nothing of the wire protocol or of a
// session; the postgres handler resolves what the text cannot prove (is a
// function built in? is a relation a view?) against the target's catalog.
//
// The parser is PostgreSQL 17's grammar (pg_query_go v6). Text it rejects
// is of kind "unknown", which policy refuses by default.
package sqlclass

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/interlock/interlock/model"
)

// GrammarVersion is the PostgreSQL major version whose grammar the parser
// implements.
const GrammarVersion = 17

// Ref names a function, operator, type or relation as the statement wrote
// it: Schema is empty when the name is unqualified.
type Ref struct {
	Schema string
	Name   string
}

func (r Ref) String() string {
	if r.Schema == "" {
		return r.Name
	}
	return r.Schema + "." + r.Name
}

// Role is a role an ALTER ROLE (or a rename) changes: Name, or Spec for
// current_user, session_user, current_role, public and "all".
type Role struct {
	Spec string
	Name string
}

// Signal is a call of pg_terminate_backend or pg_cancel_backend: PID when
// the argument is a constant, Self when it is pg_backend_pid(), neither
// when the text does not say whose backend it is.
type Signal struct {
	Func string
	PID  int64
	Self bool
	// Param is the $n whose bound value is the pid (0: none).
	Param int
}

// Setting is a SET or RESET of one variable (Name is "" for RESET ALL and
// DISCARD ALL), with its value when the statement gives it as a constant.
type Setting struct {
	Name  string
	Value string
	Reset bool
}

// Class is what the parser says about one statement.
type Class struct {
	// Kind is the top-level statement's kind; Kinds adds the kinds nested
	// in it (a DELETE in a WITH, the query of an EXPLAIN, a locking
	// clause's lock, opaque), top-level first. All are model.SQLKinds.
	Kind  string
	Kinds []string
	// Tables are the relations the statement names (CTE names excluded).
	Tables []string
	// ReadOnly: the text shows no write. A statement with ReadOnly set is
	// read-only only if every function, operator, cast and relation it
	// names is vouched for (see Resolve): a function can write.
	ReadOnly bool
	// NoWhere: an UPDATE or DELETE without a WHERE clause.
	NoWhere bool
	// Transactional: every effect the statement can have is undone if its
	// transaction does not commit (no sequence, no signal, no file).
	Transactional bool
	// Prepare names the SQL-level prepared statement a PREPARE creates,
	// an EXECUTE runs or a DEALLOCATE drops (lower case; "*" for all).
	Prepare string
	// Inner is what a PREPARE prepares.
	Inner *Class
	// Err is the parser's message when the text did not parse.
	Err string

	// What the catalog must vouch for.
	Funcs  []Ref
	Ops    []Ref
	Casts  []Ref
	Reads  []Ref
	Writes []Ref
	// Opaque: the statement runs code or reaches things the text does not
	// show, whatever the catalog says (DO, CALL, COPY with a server file
	// or program, LOAD).
	Opaque bool
	// Catalog: the statement may change the catalog (DDL, roles, code):
	// what interlock knows of the catalog is stale once it ran. Defines
	// says which names it may have made resolve to new code.
	Catalog bool
	Defines Defines

	// Facts for interlock's built-in rules.
	Roles       []Role
	Signals     []Signal
	Settings    []Setting
	ConnSecrets bool // a literal password in a connection string or a user mapping
	// DatabaseAccess: the statement limits who may connect to a database
	// (ALTER DATABASE ... CONNECTION LIMIT, ALLOW_CONNECTIONS, RENAME):
	// it can lock interlock's own logins out.
	DatabaseAccess bool
	Secrets        bool // password literals to redact from the journal
	// Cursor is the cursor a DECLARE, FETCH, MOVE or CLOSE names ("*" for
	// CLOSE ALL); Hold is DECLARE ... WITH HOLD.
	Cursor string
	Hold   bool

	// MinServer is the first PostgreSQL major version whose grammar reads
	// the statement as interlock's parser does (0: every supported one):
	// an older server reads JSON_SCALAR(...), MERGE_ACTION() or
	// SYSTEM_USER as calls of functions of the same name, or 0x1F as 0
	// followed by an alias.
	MinServer int

	// tree is the statement's parse tree, for the flow analysis (shared
	// by the statements of one shape: constants do not change a flow).
	tree *pg.Node

	// literal: facts above depend on literal values, so the class is never
	// shared between statements of the same shape.
	literal bool
}

// Has says whether kind is among the statement's kinds.
func (c *Class) Has(kind string) bool { return slices.Contains(c.Kinds, kind) }

// AddKind adds a kind once.
func (c *Class) AddKind(k string) {
	if !slices.Contains(c.Kinds, k) {
		c.Kinds = append(c.Kinds, k)
	}
}

// Clone copies c deeply enough to change its kinds and flags.
func (c *Class) Clone() *Class {
	out := *c
	out.Kinds = slices.Clone(c.Kinds)
	return &out
}

// TxControl says the statement begins, ends or marks a transaction.
func (c *Class) TxControl() bool {
	cl, _ := model.SQLKindClass(c.Kind)
	return cl == model.KindTransaction && c.Kind != "set_constraints"
}

// Ends says the statement ends the transaction when it succeeds: COMMIT,
// ROLLBACK, PREPARE TRANSACTION.
func (c *Class) Ends() bool {
	switch c.Kind {
	case "commit", "rollback", "prepare_transaction":
		return true
	}
	return false
}

// Commits says the statement makes the transaction's effects permanent
// when it succeeds: COMMIT (also AND CHAIN) and PREPARE TRANSACTION.
func (c *Class) Commits() bool { return c.Kind == "commit" || c.Kind == "prepare_transaction" }

// Unknown is the class of text the parser rejects: nothing is proven.
func Unknown(err string) *Class {
	return &Class{Kind: model.SQLKindUnknown, Kinds: []string{model.SQLKindUnknown}, Err: err, Catalog: true, Defines: Defines{All: true}}
}

// Statement is one statement of a query string; Head and End are where
// its text starts and ends in the string (End is before any semicolon).
type Statement struct {
	Text      string
	Head, End int
	*Class
}

// Parsed is a whole query string: zero (an empty query), one or more
// statements.
type Parsed struct {
	Stmts []Statement
}

// Classifier parses statements, caching their classes by exact text and,
// for one statement whose literals are plain constants, by its shape (the
// text with each literal's value left out: see shape.go), so statements
// that differ only in literal values are parsed once. The parser reads
// every text the same way (PostgreSQL 17's grammar, standard_conforming_
// strings on), so the text is the whole key; what depends on the session
// (the server's version against MinServer, the session's settings, the
// catalog, its prepared statements and transaction) is judged on the
// cached class afterwards, never cached with it. The zero value is ready
// to use and safe for concurrent use.
type Classifier struct {
	once sync.Once
	// budget replaces the caches' bound (tests).
	budget int
	exact  *lru[*Parsed]
	shapes *lru[shape]
	// parses counts full parses (tests and profiling).
	parses atomic.Int64
}

// Parses returns the number of full parses so far.
func (c *Classifier) Parses() int64 { return c.parses.Load() }

// CacheStats returns the entries and the estimated bytes the caches hold.
func (c *Classifier) CacheStats() (entries, bytes int) {
	c.init()
	e1, b1 := c.exact.stats()
	e2, b2 := c.shapes.stats()
	return e1 + e2, b1 + b2
}

func (c *Classifier) init() {
	c.once.Do(func() {
		exact, shapes := exactCacheBytes, shapeCacheBytes
		if c.budget > 0 {
			exact, shapes = c.budget*3/4, c.budget/4
		}
		c.exact = newLRU[*Parsed](exact)
		c.shapes = newLRU[shape](shapes)
	})
}

// Parse classifies a query string. The result is shared: do not modify it
// (Clone a class to change it).
func (c *Classifier) Parse(text string) *Parsed {
	p := c.parse(text)
	if newLiterals(text) {
		// Numeric literals PostgreSQL 16 reads (0x1F, 1_000) and older
		// servers read otherwise; the shape cache cannot tell them from
		// plain numbers.
		out := &Parsed{Stmts: make([]Statement, len(p.Stmts))}
		for i, st := range p.Stmts {
			if newLiterals(st.Text) {
				st.Class = st.Class.Clone()
				st.MinServer = max(st.MinServer, 16)
			}
			out.Stmts[i] = st
		}
		return out
	}
	return p
}

// newLiterals says whether text holds a numeric literal in a form
// PostgreSQL 16 introduced: 0x, 0o or 0b prefixes, or _ between digits.
func newLiterals(text string) bool {
	maybe := false
	for i := 0; i+1 < len(text) && !maybe; i++ {
		ch, next := text[i], text[i+1]
		prevOK := i == 0 || !isIdentByte(text[i-1])
		switch {
		case ch == '0' && prevOK && strings.IndexByte("xXoObB", next) >= 0:
			maybe = true
		case ch >= '0' && ch <= '9' && next == '_':
			maybe = true
		}
	}
	if !maybe {
		return false
	}
	res, err := pg.Scan(text)
	if err != nil {
		return false
	}
	for _, t := range res.Tokens {
		if t.Token != pg.Token_ICONST && t.Token != pg.Token_FCONST {
			continue
		}
		lit := strings.ToLower(text[t.Start:t.End])
		if strings.Contains(lit, "_") || strings.HasPrefix(lit, "0x") || strings.HasPrefix(lit, "0o") || strings.HasPrefix(lit, "0b") {
			return true
		}
	}
	return false
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
}

func (c *Classifier) parse(text string) *Parsed {
	c.init()
	if p, ok := c.exact.get(text); ok {
		return p
	}
	if len(text) > cacheMaxText {
		return c.full(text)
	}
	var keyBuf [256]byte
	var litBuf [16]shapeLit
	if key, lits, ok := shapeOf(text, keyBuf[:0], litBuf[:0]); ok && !mentionsPasswordLit(text, lits) {
		if sh, ok := c.shapes.getBytes(key); ok {
			if p, ok := fromShape(text, sh); ok {
				return p
			}
		}
		p := c.full(text)
		if shareable(p, lits, text) {
			st := p.Stmts[0]
			c.shapes.put(string(key), shape{Class: st.Class, head: st.Head, tail: len(text) - st.End}, classBytes(st.Class))
			return p
		}
		c.exact.put(text, p, parsedBytes(text, p))
		return p
	}
	p := c.full(text)
	c.exact.put(text, p, parsedBytes(text, p))
	return p
}

func (c *Classifier) full(text string) *Parsed {
	c.parses.Add(1)
	tree, err := pg.Parse(text)
	if err != nil {
		t := strings.TrimSpace(text)
		if t == "" || strings.Trim(t, "; \t\r\n") == "" {
			return &Parsed{}
		}
		// One parse failure covers the whole string: its statements are
		// not told apart, so none is judged on its own.
		return &Parsed{Stmts: []Statement{{Text: t, End: len(text), Class: Unknown(err.Error())}}}
	}
	p := &Parsed{}
	for _, raw := range tree.Stmts {
		loc, n := int(raw.StmtLocation), int(raw.StmtLen)
		if loc < 0 || loc > len(text) {
			loc = 0
		}
		end := len(text)
		if n > 0 && loc+n <= len(text) {
			end = loc + n
		}
		p.Stmts = append(p.Stmts, Statement{Text: strings.TrimSpace(text[loc:end]), Head: loc, End: end, Class: classify(raw.Stmt)})
	}
	return p
}

// Merged judges a query string as one statement: the union of its
// statements' kinds and names (a Parse message holds one statement; the
// server refuses more, but they are judged together all the same).
func Merged(p *Parsed) *Class {
	switch len(p.Stmts) {
	case 0:
		return &Class{Kind: model.SQLKindEmpty, Kinds: []string{model.SQLKindEmpty}, ReadOnly: true, Transactional: true}
	case 1:
		return p.Stmts[0].Class
	}
	out := &Class{Kind: p.Stmts[0].Kind, ReadOnly: true, Transactional: true}
	for _, st := range p.Stmts {
		for _, k := range st.Kinds {
			out.AddKind(k)
		}
		for _, t := range st.Tables {
			if !slices.Contains(out.Tables, t) {
				out.Tables = append(out.Tables, t)
			}
		}
		out.ReadOnly = out.ReadOnly && st.ReadOnly
		out.Transactional = out.Transactional && st.Transactional
		out.NoWhere = out.NoWhere || st.NoWhere
		out.Opaque = out.Opaque || st.Opaque
		out.Catalog = out.Catalog || st.Catalog
		out.ConnSecrets = out.ConnSecrets || st.ConnSecrets
		out.Secrets = out.Secrets || st.Secrets
		out.Funcs = append(out.Funcs, st.Funcs...)
		out.Ops = append(out.Ops, st.Ops...)
		out.Casts = append(out.Casts, st.Casts...)
		out.Reads = append(out.Reads, st.Reads...)
		out.Writes = append(out.Writes, st.Writes...)
		out.Roles = append(out.Roles, st.Roles...)
		out.Signals = append(out.Signals, st.Signals...)
		out.Settings = append(out.Settings, st.Settings...)
		out.MinServer = max(out.MinServer, st.MinServer)
		out.Defines.All = out.Defines.All || st.Defines.All
		out.Defines.Funcs = append(out.Defines.Funcs, st.Defines.Funcs...)
		out.Defines.Ops = append(out.Defines.Ops, st.Defines.Ops...)
		out.Defines.Domains = append(out.Defines.Domains, st.Defines.Domains...)
		out.Defines.Relations = append(out.Defines.Relations, st.Defines.Relations...)
		if st.Err != "" {
			out.Err = st.Err
		}
	}
	return out
}
