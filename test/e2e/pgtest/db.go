package pgtest

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
)

// CreateDB creates a database owned by AppUser and returns a connection
// string for it (scram-sha-256 over TLS, the server's certificate
// verified against CAFile): for tests that want a fresh database each.
func (s *Server) CreateDB(name string) (string, error) {
	if out, err := s.PSQL("postgres", fmt.Sprintf("CREATE DATABASE %q OWNER %s", name, AppUser)); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %v: %s", name, err, out)
	}
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(AppUser, AppPassword),
		Host: s.Host + ":" + strconv.Itoa(s.Port), Path: "/" + name,
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.CAFile}}.Encode(),
	}
	return u.String(), nil
}

// Dump returns pg_dump's plain-text dump of a database (schema and every
// row): for tests that must show a value is nowhere in it.
func (s *Server) Dump(db string) (string, error) {
	out, err := s.asPostgres(filepath.Join(s.BinDir, "pg_dump"), "-h", s.Socket, "-p", strconv.Itoa(s.Port), "-U", SuperUser, "-d", db).Output()
	if err != nil {
		return "", fmt.Errorf("pgtest: pg_dump %s: %w", db, err)
	}
	return string(out), nil
}
