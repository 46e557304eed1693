package postgres

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// catalog is interlock's own connections to its targets (one per target,
// address and database, since catalogs are per database), made with the
// held credentials. Interlock reads the catalog over them: the names of
// result columns for masking rules, the trust of functions and relations,
// the committed names of relations a transaction changed.
//
// The monitored session shares the held role and can give it role-level
// settings; these connections set what matters themselves (the startup
// packet outranks role settings), and every query on them qualifies its
// names and operators anyway. A failure here is a refusal, never "no
// mask" or "trusted".
type catalog struct {
	mu    sync.Mutex
	conns map[catKey]*catConn
}

type catKey struct {
	target   string
	dst      netip.AddrPort
	database string
}

type catConn struct {
	mu     sync.Mutex
	pc     *pgconn.PgConn
	tables map[uint32]*tableInfo
}

type tableInfo struct {
	name    string // schema.table
	kind    byte   // pg_class.relkind
	cols    map[int16]string
	fetched time.Time
}

// catalogTTL bounds how long a table's names are trusted: a table dropped
// and made again gets a new OID, and a renamed column shows within this.
const catalogTTL = time.Minute

// ownParams are the session settings of interlock's own connections.
var ownParams = map[string]string{
	"search_path":                         "pg_catalog",
	"application_name":                    "interlock",
	"standard_conforming_strings":         "on",
	"default_transaction_read_only":       "on",
	"statement_timeout":                   "10s",
	"lock_timeout":                        "5s",
	"idle_in_transaction_session_timeout": "0",
	"row_security":                        "on",
}

func (c *catalog) conn(t *target, dst netip.AddrPort, db string) *catConn {
	key := catKey{t.name, dst, db}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[catKey]*catConn{}
	}
	cc := c.conns[key]
	if cc == nil {
		cc = &catConn{tables: map[uint32]*tableInfo{}}
		c.conns[key] = cc
	}
	return cc
}

// exec runs fn on the catalog connection of (t, dst, db), connecting it
// first when needed. An error closes the connection: the next call makes a
// new one.
func (c *catalog) exec(ctx context.Context, t *target, dst netip.AddrPort, db string, fn func(*pgconn.PgConn) error) error {
	cc := c.conn(t, dst, db)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.execLocked(ctx, t, dst, db, fn)
}

func (cc *catConn) execLocked(ctx context.Context, t *target, dst netip.AddrPort, db string, fn func(*pgconn.PgConn) error) error {
	if cc.pc == nil || cc.pc.IsClosed() {
		cfg := t.config(dst, db)
		cfg.RuntimeParams = map[string]string{}
		for k, v := range ownParams {
			cfg.RuntimeParams[k] = v
		}
		cctx, cancel := context.WithTimeout(ctx, t.dialTime)
		pc, err := pgconn.ConnectConfig(cctx, cfg)
		cancel()
		if err != nil {
			t.loginFailed(err)
			return fmt.Errorf("catalog connection: %s", t.scrub(err.Error()))
		}
		cc.pc = pc
	}
	if err := fn(cc.pc); err != nil {
		cc.pc.Close(context.Background())
		cc.pc = nil
		return fmt.Errorf("catalog query: %s", t.scrub(err.Error()))
	}
	return nil
}

// names returns schema.table and column names for the OIDs.
func (c *catalog) names(ctx context.Context, t *target, dst netip.AddrPort, db string, oids []uint32) (map[uint32]*tableInfo, error) {
	cc := c.conn(t, dst, db)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	out := make(map[uint32]*tableInfo, len(oids))
	var missing []string
	now := time.Now()
	for _, oid := range oids {
		if ti, ok := cc.tables[oid]; ok && now.Sub(ti.fetched) < catalogTTL {
			out[oid] = ti
		} else {
			missing = append(missing, strconv.FormatUint(uint64(oid), 10))
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	const q = `/* interlock: catalog names */
SELECT c.oid::pg_catalog.text, n.nspname OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname, a.attnum::pg_catalog.text, a.attname::pg_catalog.text, c.relkind::pg_catalog.text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]) AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped`
	fresh := map[uint32]*tableInfo{}
	err := cc.execLocked(ctx, t, dst, db, func(pc *pgconn.PgConn) error {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rr := pc.ExecParams(qctx, q, [][]byte{[]byte("{" + strings.Join(missing, ",") + "}")}, nil, nil, nil)
		for rr.NextRow() {
			v := rr.Values()
			oid, err1 := strconv.ParseUint(string(v[0]), 10, 32)
			num, err2 := strconv.ParseInt(string(v[2]), 10, 16)
			if err1 != nil || err2 != nil {
				continue
			}
			ti := fresh[uint32(oid)]
			if ti == nil {
				ti = &tableInfo{name: string(v[1]), cols: map[int16]string{}, fetched: now}
				if len(v[4]) > 0 {
					ti.kind = v[4][0]
				}
				fresh[uint32(oid)] = ti
			}
			ti.cols[int16(num)] = string(v[3])
		}
		_, err := rr.Close()
		return err
	})
	if err != nil {
		return nil, err
	}
	for oid, ti := range fresh {
		cc.tables[oid] = ti
		out[oid] = ti
	}
	return out, nil
}
