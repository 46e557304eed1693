package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// A statement's text cannot show whether it only reads: upper(x) may be a
// function the session wrote that deletes rows, a view may call one, a
// write may fire a trigger. Interlock asks the target's catalog, over a
// connection of its own that the session cannot steer, which functions,
// operators, domains and relations are not PostgreSQL's own or run code
// the text does not show, and resolves each statement against that:
// anything that may run code the session controls makes the statement
// opaque (not read-only, and judged by what it did).
//
// The catalog changes. A session's own catalog-changing transaction sees
// its uncommitted objects: the names it defined are suspect to it until it
// ends (txOverlay). Other sessions see them once it commits: while a
// catalog-changing COMMIT is on its way, resolution waits, and the next
// resolution after it reads the catalog again.

// trustTTL bounds how long a snapshot is used without reading the
// catalog again (changes made outside interlock show within it).
const trustTTL = 5 * time.Second

// trustWait bounds how long a resolution waits for another session's
// catalog-changing COMMIT to be answered; past it the statement is judged
// opaque.
const trustWait = 5 * time.Second

// trustState is one target's catalog trust, shared by its sessions.
type trustState struct {
	mu   sync.Mutex
	cond *sync.Cond
	// gen counts the catalog-changing transactions that ended; a snapshot
	// of an older generation is read again.
	gen uint64
	// committing counts catalog-changing transactions whose end is on its
	// way to the server.
	committing int
	snaps      map[string]*trustSnap // by database
	fetching   map[string]chan struct{}
}

func newTrustState() *trustState {
	t := &trustState{snaps: map[string]*trustSnap{}, fetching: map[string]chan struct{}{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// committingStart is called before a catalog-changing transaction's end
// is sent; release when its answer came (or the session ended).
func (t *trustState) committingStart() {
	t.mu.Lock()
	t.committing++
	t.mu.Unlock()
}

func (t *trustState) release() {
	t.mu.Lock()
	if t.committing > 0 {
		t.committing--
	}
	t.gen++
	t.cond.Broadcast()
	t.mu.Unlock()
}

// funcTrust aggregates what the catalog holds under one function or
// operator name.
type funcTrust struct {
	// untrusted: one of them belongs to a role the held role can act as,
	// or to a role that is not a superuser: code someone other than the
	// server's administrators wrote.
	untrusted bool
	// volatile: one of them outside pg_catalog is volatile (it may
	// write).
	volatile bool
}

type relTrust struct {
	// read: reading it runs code the text does not show (a view over
	// functions or other views, row security, a foreign table); write:
	// writing it does (triggers, rules, a view, an inheritance parent, a
	// cascading foreign key, defaults or checks calling functions).
	read, write bool
}

// trustSnap is what the catalog said at one time.
type trustSnap struct {
	gen uint64
	at  time.Time
	// funcs and ops are by name; funcsIn and opsIn by schema.name.
	funcs, funcsIn, ops, opsIn map[string]funcTrust
	// catVolatile are pg_catalog's volatile function names.
	catVolatile map[string]bool
	domains     map[string]bool
	rels        map[string]relTrust
	userCasts   bool
	eventTrig   bool
	// resolved caches resolutions by class (the classifier shares one
	// class among statements of one shape).
	resolved sync.Map
}

// snapshot returns a current snapshot of db, reading the catalog when the
// last one is stale. It waits while another session's catalog change is
// being committed.
func (t *trustState) snapshot(ctx context.Context, h *Handler, tg *target, s *session) (*trustSnap, error) {
	deadline := time.Now().Add(trustWait)
	t.mu.Lock()
	for {
		if t.committing > 0 && !s.tx.catalog {
			if time.Now().After(deadline) {
				t.mu.Unlock()
				return nil, fmt.Errorf("another session's catalog change is still being committed")
			}
			waitCond(t.cond, 50*time.Millisecond)
			continue
		}
		snap := t.snaps[s.database]
		if snap != nil && snap.gen == t.gen && time.Since(snap.at) < trustTTL {
			t.mu.Unlock()
			return snap, nil
		}
		if ch := t.fetching[s.database]; ch != nil {
			t.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			t.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		t.fetching[s.database] = ch
		gen := t.gen
		t.mu.Unlock()
		snap, err := fetchTrust(ctx, h, tg, s)
		t.mu.Lock()
		delete(t.fetching, s.database)
		close(ch)
		if err != nil {
			t.mu.Unlock()
			return nil, err
		}
		snap.gen = gen
		t.snaps[s.database] = snap
		if gen == t.gen {
			t.mu.Unlock()
			return snap, nil
		}
		// The catalog changed while it was read: read it again.
	}
}

// waitCond waits on c (its lock held) for at most d.
func waitCond(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, c.Broadcast)
	c.Wait()
	t.Stop()
}

// trustSQL reads, in one round trip, everything resolution needs. Every
// name is qualified and every operator spelled OPERATOR(pg_catalog.x):
// the connection is interlock's own (search_path=pg_catalog), but the
// query must not depend on that either.
const trustSQL = `/* interlock: catalog trust */
WITH held AS (
  SELECT r.oid FROM pg_catalog.pg_roles r
  WHERE pg_catalog.pg_has_role($1::pg_catalog.name, r.oid, 'MEMBER')
), untrusted AS (
  SELECT r.oid FROM pg_catalog.pg_roles r
  WHERE NOT r.rolsuper OR r.oid OPERATOR(pg_catalog.=) ANY (SELECT h.oid FROM held h)
), sys AS (
  SELECT n.oid FROM pg_catalog.pg_namespace n
  WHERE n.nspname OPERATOR(pg_catalog.=) ANY ('{pg_catalog,information_schema}'::pg_catalog.text[])
)
SELECT 'f'::pg_catalog.text, p.proname::pg_catalog.text, n.nspname::pg_catalog.text,
       p.provolatile::pg_catalog.text, p.proowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u), false, false
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
WHERE NOT p.pronamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
UNION ALL
SELECT 'v', p.proname::pg_catalog.text, 'pg_catalog', 'v', false, false, false
FROM pg_catalog.pg_proc p
WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace AND p.provolatile OPERATOR(pg_catalog.=) 'v'
UNION ALL
SELECT 'o', o.oprname::pg_catalog.text, n.nspname::pg_catalog.text, COALESCE(p.provolatile::pg_catalog.text, 'v'),
       o.oprowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u)
         OR COALESCE(p.proowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u), true), false, false
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) o.oprcode::pg_catalog.oid
WHERE NOT o.oprnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
UNION ALL
(SELECT 'c', '', '', '', true, false, false
 FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) c.castfunc
 WHERE NOT p.pronamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
   AND (p.proowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u) OR p.provolatile OPERATOR(pg_catalog.=) 'v') LIMIT 1)
UNION ALL
SELECT 'd', t.typname::pg_catalog.text, n.nspname::pg_catalog.text, '', true, false, false
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
WHERE t.typtype OPERATOR(pg_catalog.=) 'd' AND NOT t.typnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.contypid OPERATOR(pg_catalog.=) t.oid AND k.contype OPERATOR(pg_catalog.=) 'c'
    AND (t.typowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u) OR EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.refobjid
      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) k.oid
        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND p.proowner OPERATOR(pg_catalog.=) ANY (SELECT u.oid FROM untrusted u))))
UNION ALL
(SELECT 'e', '', '', '', true, false, false FROM pg_catalog.pg_event_trigger LIMIT 1)
UNION ALL
SELECT 'r', x.relname, x.nspname, '', false, x.rd, x.wr FROM (
  SELECT c.relname::pg_catalog.text AS relname, n.nspname::pg_catalog.text AS nspname,
    c.relkind OPERATOR(pg_catalog.=) 'f' OR c.relrowsecurity
    OR (c.relkind OPERATOR(pg_catalog.=) 'v' AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_rewrite rw JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) rw.oid
      WHERE rw.ev_class OPERATOR(pg_catalog.=) c.oid AND (
        (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) d.refobjid AND p.pronamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)))
        OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) d.refobjid AND o.oprnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)))
        OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.<>) c.oid AND EXISTS (
          SELECT 1 FROM pg_catalog.pg_class c2 WHERE c2.oid OPERATOR(pg_catalog.=) d.refobjid
            AND (c2.relkind OPERATOR(pg_catalog.=) ANY ('{v,f}'::pg_catalog."char"[]) OR c2.relrowsecurity)
            AND NOT c2.relnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)))))) AS rd,
    c.relkind OPERATOR(pg_catalog.=) ANY ('{v,f,p}'::pg_catalog."char"[]) OR c.relhasrules OR c.relhassubclass OR c.relrowsecurity
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT tg.tgisinternal)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.confrelid OPERATOR(pg_catalog.=) c.oid AND k.contype OPERATOR(pg_catalog.=) 'f'
      AND (k.confdeltype OPERATOR(pg_catalog.=) ANY ('{c,n,d}'::pg_catalog."char"[]) OR k.confupdtype OPERATOR(pg_catalog.=) ANY ('{c,n,d}'::pg_catalog."char"[])))
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.atttypid
      WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
        AND ty.typtype OPERATOR(pg_catalog.=) 'd' AND NOT ty.typnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s))
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.refobjid
      WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND NOT p.pronamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
        AND ((d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ANY (
               SELECT ad.oid FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid OPERATOR(pg_catalog.=) c.oid))
          OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ANY (
               SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid))
          OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) ANY (
               SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid)))) AS wr
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])
    AND NOT c.relnamespace OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM sys s)
) x WHERE x.rd OR x.wr`

// maxTrustRows bounds a snapshot; a catalog with more objects of interest
// is not trusted at all (every name is suspect).
const maxTrustRows = 500000

func fetchTrust(ctx context.Context, h *Handler, tg *target, s *session) (*trustSnap, error) {
	snap := &trustSnap{at: time.Now(), funcs: map[string]funcTrust{}, funcsIn: map[string]funcTrust{},
		ops: map[string]funcTrust{}, opsIn: map[string]funcTrust{}, catVolatile: map[string]bool{},
		domains: map[string]bool{}, rels: map[string]relTrust{}}
	n := 0
	err := h.cat.exec(ctx, tg, s.origin.OrigDst, s.database, func(pc *pgconn.PgConn) error {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rr := pc.ExecParams(qctx, trustSQL, [][]byte{[]byte(tg.user)}, nil, nil, nil)
		for rr.NextRow() {
			n++
			if n > maxTrustRows {
				rr.Close()
				return fmt.Errorf("the catalog holds more than %d functions, operators and relations of interest", maxTrustRows)
			}
			v := rr.Values()
			kind, name, nsp := string(v[0]), string(v[1]), string(v[2])
			vol := string(v[3]) == "v"
			bad := string(v[4]) == "t"
			switch kind {
			case "f", "o":
				byName, byQual := snap.funcs, snap.funcsIn
				if kind == "o" {
					byName, byQual = snap.ops, snap.opsIn
				}
				for _, k := range []string{name, nsp + "." + name} {
					m := byName
					if k != name {
						m = byQual
					}
					ft := m[k]
					ft.untrusted = ft.untrusted || bad
					ft.volatile = ft.volatile || vol
					m[k] = ft
				}
			case "v":
				snap.catVolatile[name] = true
			case "c":
				snap.userCasts = true
			case "d":
				snap.domains[name] = true
			case "e":
				snap.eventTrig = true
			case "r":
				rt := snap.rels[name]
				rt.read = rt.read || string(v[5]) == "t"
				rt.write = rt.write || string(v[6]) == "t"
				snap.rels[name] = rt
			}
		}
		_, err := rr.Close()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the catalog of target %s: %w", tg.name, err)
	}
	return snap, nil
}

// trustVerdict is what resolution found for one name.
type trustVerdict uint8

const (
	vPure   trustVerdict = iota // PostgreSQL's own, without side effects
	vImpure                     // PostgreSQL's own, with effects (nextval, set_config)
	vOpaque                     // code the text does not show
)

func (snap *trustSnap) function(r sqlclass.Ref) trustVerdict {
	switch r.Schema {
	case "pg_catalog":
		return snap.builtin(r)
	case "":
		if ft, ok := snap.funcs[r.Name]; ok && (ft.untrusted || ft.volatile) {
			return vOpaque
		}
		return snap.builtin(r)
	case "information_schema":
		return vPure
	}
	if ft, ok := snap.funcsIn[r.String()]; !ok || ft.untrusted || ft.volatile {
		return vOpaque
	}
	return vPure
}

// builtin judges a function of pg_catalog. Volatile ones have effects
// unless interlock knows them to be pure; interlock's own list of those
// with effects counts too, since the catalog marks some of them stable
// (txid_current and pg_current_xact_id assign the transaction an id).
func (snap *trustSnap) builtin(r sqlclass.Ref) trustVerdict {
	if sqlclass.PureName(r) {
		return vPure
	}
	if snap.catVolatile[r.Name] || sqlclass.ImpureBuiltinName(r) {
		return vImpure
	}
	return vPure
}

func (snap *trustSnap) operator(r sqlclass.Ref) trustVerdict {
	switch r.Schema {
	case "pg_catalog":
		return vPure
	case "":
		if ft, ok := snap.ops[r.Name]; ok && (ft.untrusted || ft.volatile) {
			return vOpaque
		}
		return vPure
	}
	if ft, ok := snap.opsIn[r.String()]; !ok || ft.untrusted || ft.volatile {
		return vOpaque
	}
	return vPure
}

// txOverlay is what a session's own catalog-changing transaction defined:
// the names that may resolve to its uncommitted objects.
type txOverlay struct {
	all                   bool
	funcs, ops, doms, rel map[string]bool
}

func (o *txOverlay) empty() bool {
	return !o.all && len(o.funcs)+len(o.ops)+len(o.doms)+len(o.rel) == 0
}

// note records what a catalog-changing statement may have defined.
func (o *txOverlay) note(c *sqlclass.Class) {
	add := func(m *map[string]bool, names []string) {
		if *m == nil {
			*m = map[string]bool{}
		}
		for _, n := range names {
			(*m)[n] = true
		}
	}
	d := c.Defines
	switch {
	case d.All:
		o.all = true
	default:
		add(&o.funcs, d.Funcs)
		add(&o.ops, d.Ops)
		add(&o.doms, d.Domains)
		add(&o.rel, d.Relations)
	}
}

// resolve judges a class against the catalog: a function, operator, cast
// or relation that may run code the session controls makes the statement
// opaque; a built-in function with effects makes it not read-only. Without
// a snapshot (the catalog could not be read) every such name is suspect.
func (s *session) resolve(c *sqlclass.Class) *sqlclass.Class {
	if c != nil && c.MinServer > s.serverMajor && s.serverMajor > 0 {
		u := sqlclass.Unknown(fmt.Sprintf("the statement uses syntax of PostgreSQL %d, which this server (%d) reads differently", c.MinServer, s.serverMajor))
		u.Kinds = append([]string{c.Kind}, u.Kinds...)
		return u
	}
	if c == nil || (len(c.Funcs)+len(c.Ops)+len(c.Casts)+len(c.Reads)+len(c.Writes) == 0 && !c.Catalog) {
		return c
	}
	snap, err := s.trust.snapshot(s.ctx, s.h, s.t, s)
	if err != nil {
		s.log.Warn("judging statements as opaque: the catalog could not be read", "err", err)
	}
	s.mu.Lock()
	ov := s.tx.overlay
	s.mu.Unlock()
	if snap != nil && ov.empty() {
		if v, ok := snap.resolved.Load(c); ok {
			return v.(*sqlclass.Class)
		}
	}
	out := resolveWith(c, snap, &ov)
	if snap != nil && ov.empty() {
		snap.resolved.Store(c, out)
	}
	return out
}

func resolveWith(c *sqlclass.Class, snap *trustSnap, ov *txOverlay) *sqlclass.Class {
	opaque, impure := false, false
	suspect := snap == nil || ov.all
	for _, f := range c.Funcs {
		switch {
		case suspect || ov.funcs[f.Name]:
			opaque = true
		default:
			switch snap.function(f) {
			case vOpaque:
				opaque = true
			case vImpure:
				impure = true
			}
		}
	}
	for _, o := range c.Ops {
		if suspect || ov.ops[o.Name] || snap.operator(o) == vOpaque {
			opaque = true
		}
	}
	for _, t := range c.Casts {
		if suspect || ov.doms[t.Name] || snap.userCasts || snap.domains[t.Name] {
			opaque = true
		}
	}
	for _, r := range c.Reads {
		if suspect || ov.rel[r.Name] || snap.rels[r.Name].read {
			opaque = true
		}
	}
	for _, r := range c.Writes {
		if suspect || ov.rel[r.Name] || snap.rels[r.Name].write {
			opaque = true
		}
	}
	if c.Catalog && snap != nil && snap.eventTrig {
		// Event triggers run code on DDL.
		opaque = true
	}
	if !opaque && !impure {
		return c
	}
	out := c.Clone()
	out.ReadOnly = false
	out.Transactional = out.Transactional && !impure && !opaque
	if opaque {
		out.Opaque = true
		out.Catalog = true
		out.AddKind(model.SQLKindOpaque)
	}
	return out
}
