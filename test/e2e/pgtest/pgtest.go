// Package pgtest starts a real PostgreSQL 15 server for tests and
// benchmarks: initdb as the postgres user (initdb refuses root), TCP on a
// loopback address, scram-sha-256 for every host login (md5 for one
// role), TLS on with a certificate from a test CA, and a unix socket in
// the server's own directory for the superuser's setup.
package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/internal/testkit"
)

// Fixed roles every server has. The passwords are test values.
const (
	SuperUser     = "postgres"
	SuperPassword = "super-secret-pw"
	AppUser       = "app"
	AppPassword   = "app-secret-pw-9f3c"
	AppDB         = "appdb"
	MD5User       = "md5user"
	MD5Password   = "md5-secret-pw-1d2e"
)

// Options shape a server.
type Options struct {
	// Host is the address to listen on; 127.0.0.2 when empty.
	Host string
	// Durable keeps fsync on (benchmarks); tests turn it off.
	Durable bool
	// Extra lines for postgresql.conf.
	Conf []string
	// HBA are extra pg_hba.conf lines, before the defaults (a test that
	// reaches the server from another address allows it here).
	HBA []string
}

// Server is a running PostgreSQL.
type Server struct {
	Dir  string
	Host string
	Port int
	// CAFile is the CA that signed the server's certificate.
	CAFile string
	// Socket is the unix socket directory (trust auth for the superuser).
	Socket string
	BinDir string
	log    string
	data   string
	uid    int
	gid    int
}

// BinDir finds PostgreSQL 15's server binaries.
func BinDir() (string, error) {
	for _, d := range []string{os.Getenv("PG_BINDIR"), "/usr/lib/postgresql/15/bin"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL 15 server binaries not found in /usr/lib/postgresql/15/bin (apt-get install postgresql-15, or set PG_BINDIR)")
}

// Available says whether Start can work here, and why not.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (initdb runs as the postgres user through runuser)")
	}
	if _, err := BinDir(); err != nil {
		return err
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return errors.New("no postgres user (apt-get install postgresql-15)")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return err
	}
	return nil
}

// Start initialises and starts a server. Stop it with Stop.
func Start(opts Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	bin, _ := BinDir()
	u, _ := user.Lookup("postgres")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	host := opts.Host
	if host == "" {
		host = "127.0.0.2"
	}
	dir, err := os.MkdirTemp("", "interlock-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Host: host, BinDir: bin, Socket: dir, data: filepath.Join(dir, "data"), log: filepath.Join(dir, "server.log"), uid: uid, gid: gid}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	pw := filepath.Join(dir, "pwfile")
	if err := s.writeOwned(pw, SuperPassword+"\n", 0o600); err != nil {
		return nil, err
	}
	if out, err := s.asPostgres(filepath.Join(bin, "initdb"), "-D", s.data, "-U", SuperUser, "--pwfile", pw,
		"-A", "scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := s.certs(); err != nil {
		return nil, err
	}
	port, err := testkit.PickPort(host)
	if err != nil {
		return nil, err
	}
	s.Port = port
	conf := []string{
		fmt.Sprintf("listen_addresses = '%s'", host),
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"ssl = on",
		"ssl_cert_file = 'server.crt'",
		"ssl_key_file = 'server.key'",
		"max_connections = 200",
		"password_encryption = 'scram-sha-256'",
	}
	if !opts.Durable {
		conf = append(conf, "fsync = off", "synchronous_commit = off", "full_page_writes = off")
	}
	conf = append(conf, opts.Conf...)
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	f.Close()
	if err != nil {
		return nil, err
	}
	hba := strings.Join(append(append([]string{}, opts.HBA...),
		"local all all trust",
		"host all "+MD5User+" 127.0.0.0/8 md5",
		"host all all 127.0.0.0/8 scram-sha-256",
		"host all all ::1/128 scram-sha-256",
		"host replication all 127.0.0.0/8 scram-sha-256",
	), "\n") + "\n"
	if err := s.writeOwned(filepath.Join(s.data, "pg_hba.conf"), hba, 0o600); err != nil {
		return nil, err
	}
	if out, err := s.asPostgres(filepath.Join(bin, "pg_ctl"), "-D", s.data, "-l", s.log, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		logb, _ := os.ReadFile(s.log)
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, logb)
	}
	if out, err := s.PSQL("postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", AppUser, AppPassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", AppDB, AppUser),
		"SET password_encryption = 'md5'",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", MD5User, MD5Password),
		fmt.Sprintf("GRANT ALL ON DATABASE %s TO %s", AppDB, MD5User),
	); err != nil {
		return nil, fmt.Errorf("set up roles: %v: %s", err, out)
	}
	ok = true
	return s, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// PSQL runs statements as the superuser over the unix socket.
func (s *Server) PSQL(db string, stmts ...string) (string, error) {
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", s.Socket, "-p", strconv.Itoa(s.Port), "-U", SuperUser, "-d", db}
	for _, st := range stmts {
		args = append(args, "-c", st)
	}
	out, err := s.asPostgres(filepath.Join(s.BinDir, "psql"), args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Log returns the server's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// Stop stops the server at once and removes its files.
func (s *Server) Stop() {
	if s == nil || s.Dir == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err == nil {
		s.asPostgres(filepath.Join(s.BinDir, "pg_ctl"), "-D", s.data, "-m", "immediate", "-w", "stop").Run()
	}
	os.RemoveAll(s.Dir)
}

func (s *Server) asPostgres(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.Dir}
	return cmd
}

func (s *Server) writeOwned(path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, s.uid, s.gid)
}

// certs makes a test CA and a server certificate for Host and localhost.
func (s *Server) certs() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: s.Host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP(s.Host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	if err := s.writeOwned(filepath.Join(s.data, "server.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644); err != nil {
		return err
	}
	if err := s.writeOwned(filepath.Join(s.data, "server.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})), 0o600); err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	return os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
}
