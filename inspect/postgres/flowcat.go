package postgres

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/inspect/postgres/sqlclass"
	"github.com/interlock/interlock/model"
)

// The relations the flow analysis asks about, read from the target's
// catalog over interlock's own connection and kept per target and
// database for as long as its catalog trust's generation holds (a
// catalog-changing transaction that ends makes them stale) and at most
// relationsTTL.

const relationsTTL = 5 * time.Second

// relCache is one database's relations by name.
type relCache struct {
	mu   sync.Mutex
	gen  uint64
	at   time.Time
	rels map[string][]relRow // by relname
}

// relRow is a relation as the catalog has it.
type relRow struct {
	oid        uint32
	schema     string
	name       string
	kind       byte
	columns    []string
	definition string
	// kin are the relation's inheritance ancestors and descendants
	// (partitions among them), schema.name: a mask rule on one covers
	// the same columns of all, whose rows they return.
	kin []string
}

const relationsSQL = `/* interlock: relations */
SELECT c.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text,
  pg_catalog.array_to_string(ARRAY(
    SELECT pg_catalog.replace(a.attname::pg_catalog.text, ',', ',,') FROM pg_catalog.pg_attribute a
    WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
    ORDER BY a.attnum), ', '),
  CASE WHEN c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}'::pg_catalog."char"[]) THEN pg_catalog.pg_get_viewdef(c.oid) END,
  CASE WHEN c.relispartition OR c.relhassubclass OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid) THEN
  pg_catalog.array_to_string(ARRAY(
    WITH RECURSIVE up(id) AS (
      SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid
      UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid OPERATOR(pg_catalog.=) up.id),
    down(id) AS (
      SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent OPERATOR(pg_catalog.=) c.oid
      UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN down ON i.inhparent OPERATOR(pg_catalog.=) down.id)
    SELECT pg_catalog.replace(kn.nspname::pg_catalog.text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) k.relname::pg_catalog.text, ',', ',,')
    FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace kn ON kn.oid OPERATOR(pg_catalog.=) k.relnamespace
    WHERE k.oid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT id FROM up UNION SELECT id FROM down))), ', ') END
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])
  AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])`

// flowResolver answers the flow analysis for one statement of a session:
// relations from the cache (or the catalog), masked columns from the
// statement's mask rules.
type flowResolver struct {
	s    *session
	spec *model.MaskSpec
}

func (r flowResolver) Relations(ref sqlclass.Ref) ([]*sqlclass.Relation, error) {
	rows, err := r.s.relations(ref.Name)
	if err != nil {
		return nil, err
	}
	var out []*sqlclass.Relation
	for _, row := range rows {
		if ref.Schema != "" && row.schema != ref.Schema {
			continue
		}
		rel := &sqlclass.Relation{Name: row.schema + "." + row.name, Kind: row.kind, Columns: row.columns,
			Definition: row.definition, Masked: make([]bool, len(row.columns))}
		for i, col := range row.columns {
			rel.Masked[i] = r.s.h.masker.ColumnRule(r.spec, rel.Name, col) != ""
			for _, k := range row.kin {
				rel.Masked[i] = rel.Masked[i] || r.s.h.masker.ColumnRule(r.spec, k, col) != ""
			}
		}
		out = append(out, rel)
	}
	return out, nil
}

const schemaRelationsSQL = `/* interlock: schema relations */
SELECT c.relname::pg_catalog.text,
  pg_catalog.array_to_string(ARRAY(
    SELECT pg_catalog.replace(a.attname::pg_catalog.text, ',', ',,') FROM pg_catalog.pg_attribute a
    WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
    ORDER BY a.attnum), ', ')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.text
  AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,m,f}'::pg_catalog."char"[])`

// SchemaMasked says whether a schema holds a relation with a column the
// statement's mask rules cover.
func (r flowResolver) SchemaMasked(schema string) (bool, error) {
	ctx, cancel := context.WithTimeout(r.s.ctx, 10*time.Second)
	defer cancel()
	masked := false
	err := r.s.h.cat.exec(ctx, r.s.t, r.s.origin.OrigDst, r.s.database, func(pc *pgconn.PgConn) error {
		rr := pc.ExecParams(ctx, schemaRelationsSQL, [][]byte{[]byte(schema)}, nil, nil, nil)
		for rr.NextRow() {
			v := rr.Values()
			for _, col := range splitColumns(string(v[1])) {
				masked = masked || r.s.h.masker.ColumnRule(r.spec, schema+"."+string(v[0]), col) != ""
			}
		}
		_, err := rr.Close()
		return err
	})
	return masked, err
}

// relations returns the relations named name in the session's database.
func (s *session) relations(name string) ([]relRow, error) {
	c := s.h.relCacheOf(s.t.name, s.database)
	s.trust.mu.Lock()
	gen := s.trust.gen
	s.trust.mu.Unlock()
	c.mu.Lock()
	if c.gen != gen || time.Since(c.at) > relationsTTL {
		c.rels, c.gen, c.at = map[string][]relRow{}, gen, time.Now()
	}
	rows, ok := c.rels[name]
	c.mu.Unlock()
	if ok {
		return rows, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	err := s.h.cat.exec(ctx, s.t, s.origin.OrigDst, s.database, func(pc *pgconn.PgConn) error {
		rr := pc.ExecParams(ctx, relationsSQL, [][]byte{[]byte("{" + quoteArrayElem(name) + "}")}, nil, nil, nil)
		for rr.NextRow() {
			v := rr.Values()
			row := relRow{schema: string(v[1]), name: string(v[2])}
			if len(v[3]) > 0 {
				row.kind = v[3][0]
			}
			row.columns = splitColumns(string(v[4]))
			if v[5] != nil {
				row.definition = string(v[5])
			}
			row.kin = splitColumns(string(v[6]))
			rows = append(rows, row)
		}
		_, err := rr.Close()
		return err
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.rels[name] = rows
	c.mu.Unlock()
	return rows, nil
}

// splitColumns undoes relationsSQL's join (", " between names, a comma in
// a name doubled).
func splitColumns(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == ',' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',' && i+1 < len(s) && s[i+1] == ' ':
			out = append(out, cur.String())
			cur.Reset()
			i++
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// quoteArrayElem quotes a text[] literal's element.
func quoteArrayElem(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

type relKey struct{ target, database string }

// relCacheOf returns the relation cache of a target's database.
func (h *Handler) relCacheOf(target, database string) *relCache {
	h.trustMu.Lock()
	defer h.trustMu.Unlock()
	if h.rels == nil {
		h.rels = map[relKey]*relCache{}
	}
	c := h.rels[relKey{target, database}]
	if c == nil {
		c = &relCache{rels: map[string][]relRow{}}
		h.rels[relKey{target, database}] = c
	}
	return c
}
