package pgtest

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/interlock/interlock/test/testenv"
)

// Shared is one server for a package's tests, started on first use; each
// test that wants a database of its own gets one. TestMain calls Stop.
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
	seq  atomic.Int64
}

// Server returns the package's server, starting it the first time. A
// missing prerequisite skips the test, or fails it under CI=true.
func (s *Shared) Server(t testing.TB) *Server {
	t.Helper()
	s.once.Do(func() {
		if s.err = Available(); s.err == nil {
			s.srv, s.err = Start(Options{})
		}
	})
	testenv.Require(t, "a PostgreSQL 15 server", s.err)
	return s.srv
}

// NewDB creates a fresh database named after prefix and returns its
// connection string.
func (s *Shared) NewDB(t testing.TB, prefix string) string {
	t.Helper()
	conn, err := s.Server(t).CreateDB(fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), s.seq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// Stop stops the server if it was started.
func (s *Shared) Stop() { s.srv.Stop() }
