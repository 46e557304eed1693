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

// catalog names the tables and columns of result sets for masking rules
// written as table.column. RowDescription gives each column's table OID and
// column number, whatever alias the query used; interlock asks the server
// what those are, over a connection of its own with the held credentials
// (one per target and database, since OIDs are per database).
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
	cols    map[int16]string
	fetched time.Time
}

// catalogTTL bounds how long a table's names are trusted: a table dropped
// and made again gets a new OID, and a renamed column shows within this.
const catalogTTL = time.Minute

// names returns schema.table and column names for the OIDs.
func (c *catalog) names(ctx context.Context, t *target, dst netip.AddrPort, db string, oids []uint32) (map[uint32]*tableInfo, error) {
	key := catKey{t.name, dst, db}
	c.mu.Lock()
	if c.conns == nil {
		c.conns = map[catKey]*catConn{}
	}
	cc := c.conns[key]
	if cc == nil {
		cc = &catConn{tables: map[uint32]*tableInfo{}}
		c.conns[key] = cc
	}
	c.mu.Unlock()

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
	if cc.pc == nil || cc.pc.IsClosed() {
		cctx, cancel := context.WithTimeout(ctx, t.dialTime)
		pc, err := pgconn.ConnectConfig(cctx, t.config(dst, db))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("catalog connection: %s", t.scrub(err.Error()))
		}
		cc.pc = pc
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	const q = `SELECT c.oid, n.nspname || '.' || c.relname, a.attnum, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.oid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped`
	rr := cc.pc.ExecParams(qctx, q, [][]byte{[]byte("{" + strings.Join(missing, ",") + "}")}, nil, nil, nil)
	fresh := map[uint32]*tableInfo{}
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
			fresh[uint32(oid)] = ti
		}
		ti.cols[int16(num)] = string(v[3])
	}
	if _, err := rr.Close(); err != nil {
		cc.pc.Close(context.Background())
		cc.pc = nil
		return nil, fmt.Errorf("catalog query: %s", t.scrub(err.Error()))
	}
	for oid, ti := range fresh {
		cc.tables[oid] = ti
		out[oid] = ti
	}
	return out, nil
}
