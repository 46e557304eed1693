package pgtest

import (
	"fmt"
	"net/url"
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
