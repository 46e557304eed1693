package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// effectsSQL reads, from inside the transaction, what it did: per
// relation, the rows it inserted, updated and deleted
// (pg_stat_get_xact_*: this backend's counts, subtransactions and triggers
// included), the relation locks it holds beyond row writes, the relation's
// storage (a TRUNCATE or a rewrite gives it new storage) and its
// inheritance ancestors. The counts are read for the relations the
// transaction holds a lock of its own on beyond reading (a write takes
// RowExclusiveLock until the end of the transaction, wherever it was made
// from) and for the system catalogs (DDL releases its catalog locks early). A relation it dropped no longer shows in pg_class
// but keeps its lock: it comes back with a null name, and the catalog
// connection (which sees the committed catalog) names it. The last row
// asks the server to flush these counters when it next goes idle, so that
// the next transaction's counts start from zero.
//
// It runs in the client's session, whose search_path and role the client
// controls: every name is qualified and every operator spelled
// OPERATOR(pg_catalog.x).
const effectsSQL = `/* interlock: effects */
WITH lk AS MATERIALIZED (
  SELECT l.relation AS oid, pg_catalog.string_agg(l.mode, ',') AS modes
  FROM pg_catalog.pg_locks l
  WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted
    AND l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
    AND l.mode OPERATOR(pg_catalog.<>) ALL ('{AccessShareLock,RowShareLock}'::pg_catalog.text[])
  GROUP BY l.relation
), cand AS (
  SELECT lk.oid FROM lk
  UNION
  SELECT c.oid FROM pg_catalog.pg_class c
  WHERE c.relnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace AND c.relkind OPERATOR(pg_catalog.=) 'r'
), st AS MATERIALIZED (
  SELECT cand.oid, x.ins, x.upd, x.del
  FROM cand,
  LATERAL (SELECT pg_catalog.pg_stat_get_xact_tuples_inserted(cand.oid) AS ins,
                  pg_catalog.pg_stat_get_xact_tuples_updated(cand.oid) AS upd,
                  pg_catalog.pg_stat_get_xact_tuples_deleted(cand.oid) AS del) x
  WHERE x.ins OPERATOR(pg_catalog.>) 0 OR x.upd OPERATOR(pg_catalog.>) 0 OR x.del OPERATOR(pg_catalog.>) 0
), ids AS (
  SELECT st.oid FROM st
  UNION
  SELECT lk.oid FROM lk WHERE lk.modes OPERATOR(pg_catalog.<>) 'RowExclusiveLock'
)
SELECT ids.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text,
  c.relfilenode::pg_catalog.text,
  COALESCE(st.ins, 0)::pg_catalog.text, COALESCE(st.upd, 0)::pg_catalog.text, COALESCE(st.del, 0)::pg_catalog.text,
  lk.modes,
  (WITH RECURSIVE a(oid, depth) AS (
     SELECT i.inhparent, 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) ids.oid
     UNION
     SELECT i.inhparent, a.depth OPERATOR(pg_catalog.+) 1 FROM pg_catalog.pg_inherits i JOIN a ON i.inhrelid OPERATOR(pg_catalog.=) a.oid
     WHERE a.depth OPERATOR(pg_catalog.<) 64)
   SELECT pg_catalog.string_agg(pn.nspname OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) p.relname, ',')
   FROM a JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) a.oid
   JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.relnamespace)
FROM ids
LEFT JOIN st ON st.oid OPERATOR(pg_catalog.=) ids.oid
LEFT JOIN lk ON lk.oid OPERATOR(pg_catalog.=) ids.oid
LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) ids.oid
LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
UNION ALL
SELECT '0', 'interlock', 'flush', '', '', '0', '0', '0', NULL, NULL FROM (SELECT pg_catalog.pg_stat_force_next_flush()) f`

// lockRank orders PostgreSQL's table lock modes.
var lockRank = map[string]int{
	"AccessShareLock": 1, "RowShareLock": 2, "RowExclusiveLock": 3, "ShareUpdateExclusiveLock": 4,
	"ShareLock": 5, "ShareRowExclusiveLock": 6, "ExclusiveLock": 7, "AccessExclusiveLock": 8,
}

// readEffects reads the open transaction's effects where the server is
// between segments, with interlock's own prepared statement (planned once
// per session) in a segment of its own.
func (s *session) readEffects() model.PGEffects {
	h, err := s.hiddenPrepared(s.fxName, effectsSQL, &s.fxPrepared)
	if err != nil {
		return model.PGEffects{Error: err.Error()}
	}
	return s.effectsFrom(h)
}

// readEffectsInSegment reads them in the middle of an extended-protocol
// segment, with interlock's own prepared statement and portal (the
// client's unnamed ones stay as they are).
func (s *session) readEffectsInSegment() model.PGEffects {
	var last *hidden
	push := func(m pgproto3.FrontendMessage, expect byte, wait bool) error {
		h := &hidden{expect: expect}
		if wait {
			h.done = make(chan struct{})
			last = h
		}
		if !s.queue(&item{kind: iHidden, hidden: h}) {
			return errSkipped
		}
		return s.send(m)
	}
	portal := s.fxName + "_p"
	s.mu.Lock()
	prepared := s.fxPrepared
	s.mu.Unlock()
	var err error
	if !prepared {
		h := &hidden{expect: '1', prepares: &s.fxPrepared}
		if !s.queue(&item{kind: iHidden, hidden: h}) {
			err = errSkipped
		} else {
			err = s.send(&pgproto3.Parse{Name: s.fxName, Query: effectsSQL})
		}
	}
	if err == nil {
		err = push(&pgproto3.Close{ObjectType: 'P', Name: portal}, '3', false)
	}
	if err == nil {
		err = push(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: s.fxName}, '2', false)
	}
	if err == nil {
		err = push(&pgproto3.Execute{Portal: portal}, 'C', true)
	}
	if err == nil {
		err = s.send(&pgproto3.Flush{})
	}
	if err == nil {
		err = s.uw.Flush()
	}
	if err != nil {
		return model.PGEffects{Error: err.Error()}
	}
	select {
	case <-last.done:
	case <-s.done:
		return model.PGEffects{Error: "the session ended"}
	}
	return s.effectsFrom(last)
}

// effectsFrom turns the effects query's answer into PGEffects, naming what
// the transaction dropped, and telling new from rewritten storage, from
// the committed catalog.
func (s *session) effectsFrom(h *hidden) model.PGEffects {
	var eff model.PGEffects
	if h.err != nil {
		eff.Error = "the server refused interlock's effects query: " + h.err.Message
		return eff
	}
	var check []uint32
	filenodes := map[uint32]string{}
	for _, row := range h.rows {
		if len(row) < 10 {
			eff.Error = "the effects query returned a short row"
			return eff
		}
		str := func(i int) string {
			if row[i] == nil {
				return ""
			}
			return string(row[i])
		}
		num := func(i int) int64 {
			n, _ := strconv.ParseInt(str(i), 10, 64)
			return n
		}
		if str(1) == "interlock" && str(2) == "flush" {
			continue
		}
		oid, err := strconv.ParseUint(str(0), 10, 32)
		if err != nil {
			eff.Error = "the effects query returned a bad relation id"
			return eff
		}
		nsp := str(1)
		if nsp == "pg_toast" {
			// Out-of-line storage of a relation whose own counts show.
			continue
		}
		t := model.PGTableEffect{OID: uint32(oid), Kind: str(3), Inserted: num(5), Updated: num(6), Deleted: num(7)}
		if nsp != "" {
			t.Name = nsp + "." + str(2)
			t.System = nsp == "pg_catalog" || nsp == "information_schema"
		} else {
			t.Dropped = true
		}
		for _, m := range strings.Split(str(8), ",") {
			if lockRank[m] > lockRank[t.Lock] && lockRank[m] > lockRank["RowExclusiveLock"] {
				t.Lock = m
			}
		}
		if a := str(9); a != "" {
			t.Also = strings.Split(a, ",")
		}
		if t.Lock != "" && !t.System {
			check = append(check, t.OID)
			filenodes[t.OID] = str(4)
		}
		eff.Tables = append(eff.Tables, t)
	}
	if len(check) > 0 {
		if err := s.committedNames(&eff, check, filenodes); err != nil {
			eff.Error = err.Error()
		}
	}
	return eff
}

// committedNames asks the committed catalog (over interlock's own
// connection) about the relations the transaction locked beyond writing
// rows: the name of one it dropped or renamed, whether it existed before
// (Created), and whether its storage changed (Rewritten).
func (s *session) committedNames(eff *model.PGEffects, oids []uint32, filenodes map[uint32]string) error {
	ids := make([]string, len(oids))
	for i, o := range oids {
		ids[i] = strconv.FormatUint(uint64(o), 10)
	}
	type committed struct{ name, kind, filenode string }
	found := map[uint32]committed{}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	err := s.h.cat.exec(ctx, s.t, s.origin.OrigDst, s.database, func(pc *pgconn.PgConn) error {
		const q = `/* interlock: committed names */
SELECT c.oid::pg_catalog.text, n.nspname OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname, c.relkind::pg_catalog.text, c.relfilenode::pg_catalog.text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])`
		rr := pc.ExecParams(ctx, q, [][]byte{[]byte("{" + strings.Join(ids, ",") + "}")}, nil, nil, nil)
		for rr.NextRow() {
			v := rr.Values()
			oid, err := strconv.ParseUint(string(v[0]), 10, 32)
			if err != nil {
				continue
			}
			found[uint32(oid)] = committed{string(v[1]), string(v[2]), string(v[3])}
		}
		_, err := rr.Close()
		return err
	})
	if err != nil {
		return fmt.Errorf("name the relations the transaction changed: %w", err)
	}
	for i := range eff.Tables {
		t := &eff.Tables[i]
		if t.Lock == "" || t.System {
			continue
		}
		c, ok := found[t.OID]
		switch {
		case !ok && t.Dropped:
			// Created and dropped within the transaction.
			t.Created = true
			t.Name = fmt.Sprintf("oid %d", t.OID)
		case !ok:
			t.Created = true
		case t.Dropped:
			t.Name, t.Kind = c.name, c.kind
		default:
			if c.name != t.Name {
				t.Also = append(t.Also, c.name)
			}
			if f := filenodes[t.OID]; f != "" && f != c.filenode {
				t.Rewritten = true
			}
		}
	}
	return nil
}

// effectsSummary is one line for approvers and the journal.
func effectsSummary(eff model.PGEffects) string {
	var parts []string
	for _, t := range eff.Tables {
		if t.System {
			continue
		}
		var what []string
		if t.Inserted > 0 {
			what = append(what, fmt.Sprintf("%d inserted", t.Inserted))
		}
		if t.Updated > 0 {
			what = append(what, fmt.Sprintf("%d updated", t.Updated))
		}
		if t.Deleted > 0 {
			what = append(what, fmt.Sprintf("%d deleted", t.Deleted))
		}
		switch {
		case t.Dropped:
			what = append(what, "dropped")
		case t.Rewritten:
			what = append(what, "rewritten")
		case t.Created:
			what = append(what, "created")
		case t.Altered():
			what = append(what, "altered or locked")
		}
		if len(what) > 0 {
			parts = append(parts, t.Name+": "+strings.Join(what, ", "))
		}
	}
	catalog := 0
	for _, t := range eff.Tables {
		if t.System {
			catalog += int(t.Inserted + t.Updated + t.Deleted)
		}
	}
	if catalog > 0 {
		parts = append(parts, fmt.Sprintf("%d catalog rows changed", catalog))
	}
	if len(parts) == 0 {
		return "no rows changed"
	}
	return strings.Join(parts, "; ")
}
