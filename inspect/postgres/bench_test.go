package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// BenchmarkSelect measures one prepared SELECT round trip directly and
// through the handler (with an in-memory journal: the handler's own cost).
// cpu-ns/op is the CPU (user and system) this process spent per round
// trip: the client's, and through interlock the handler's besides; the
// wall time on a shared machine says little.
func BenchmarkSelect(b *testing.B) {
	srv := server(b)
	p := startProxy(b, proxyOpts{tls: "disable"})
	for _, side := range []string{"direct", "interlock"} {
		for _, mode := range []string{"prepared", "simple"} {
			b.Run(side+"/"+mode, func(b *testing.B) {
				dsn := p.dsn("")
				if side == "direct" {
					dsn = fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", srv.Host, srv.Port, pgtest.AppUser, pgtest.AppPassword, pgtest.AppDB)
				}
				ctx := context.Background()
				c, err := pgx.Connect(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
				var n int
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := testkit.ProcessCPU(b)
				for i := 0; i < b.N; i++ {
					if mode == "prepared" {
						err = c.QueryRow(ctx, "SELECT $1::int", i).Scan(&n)
					} else {
						_, err = c.PgConn().Exec(ctx, fmt.Sprintf("SELECT %d", i)).ReadAll()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(testkit.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
