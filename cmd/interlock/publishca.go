package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/atomicfile"
)

// postgresCAName is the client-readable copy of interlock's PostgreSQL CA
// certificate, beside the control socket (/run/interlock/postgres-ca.crt).
const postgresCAName = "postgres-ca.crt"

// publishPostgresCA copies <state_dir>/tls/ca.crt, which the postgres
// handler creates, to where any user can read it: the state directory is
// root's (and the audit group's), but a job that connects with
// sslmode=verify-full runs as whoever it is and needs the certificate as
// its sslrootcert. The certificate is public; its key stays in state_dir.
// It is rewritten at every start and reload, so it follows a new CA.
func publishPostgresCA(cfg *config.Config, log *slog.Logger) {
	src := filepath.Join(cfg.StateDir, "tls", "ca.crt")
	b, err := os.ReadFile(src)
	if errors.Is(err, fs.ErrNotExist) {
		return // no postgres target: no CA
	}
	dst := filepath.Join(filepath.Dir(cfg.Control.Socket), postgresCAName)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = atomicfile.WriteIfChanged(dst, b, 0o644)
	}
	if err != nil {
		log.Warn("could not publish the PostgreSQL CA certificate for clients; give them "+src+" yourself", "to", dst, "err", err)
		return
	}
	log.Debug("PostgreSQL clients with sslmode=verify-full can use this sslrootcert", "sslrootcert", dst)
}
