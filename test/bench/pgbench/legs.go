package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/bench/benchutil"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// The client legs' TLS, the same on every leg of a run: "off" is
// sslmode=disable, "on" sslmode=require. The server, PgBouncer and
// interlock each offer TLS to a client that asks and serve plaintext to
// one that does not, so only the client's setting changes between the two
// runs. The legs behind them (PgBouncer → server, interlock → server)
// are plaintext in both, alike. The go relay cannot terminate TLS: with
// TLS on it carries the client's to the server, which does its crypto.
const (
	tlsOff = "off"
	tlsOn  = "on"
)

func sslmode(tls string) string {
	if tls == tlsOn {
		return "require"
	}
	return "disable"
}

// conninfo is pgbench's connection string to host:port as the app user.
func conninfo(host string, port int, tls string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=%s", host, port, pgtest.AppUser, pgtest.AppDB, sslmode(tls))
}

// interlockConfig writes an interlock config with the postgres target
// (plaintext to the server, like PgBouncer's) and its journal at journal,
// plus policy.
func interlockConfig(work, journal string, srv *pgtest.Server, policy, name string) (string, error) {
	pw := filepath.Join(work, "app.password")
	if err := os.WriteFile(pw, []byte(pgtest.AppPassword+"\n"), 0o600); err != nil {
		return "", err
	}
	cfg := benchutil.ConfigHead(work, journal, "/sys/fs/bpf/interlock-bench-pg") + fmt.Sprintf(`targets:
  - name: db
    protocol: postgres
    address: "%s"
    credentials:
      user: %s
      password_file: %s
    tls: disable
`, srv.Addr(), pgtest.AppUser, pw) + policy
	p := filepath.Join(work, name)
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// startBouncer runs PgBouncer in session mode as the postgres user,
// offering TLS to clients that ask (client_tls_sslmode = prefer, with a
// certificate of its own) and plaintext to the server.
func startBouncer(bin string, srv *pgtest.Server, work string) (int, func(), error) {
	dir := filepath.Join(work, "pgbouncer")
	os.MkdirAll(dir, 0o755)
	port, err := testkit.PickPort("127.0.0.1")
	if err != nil {
		return 0, nil, err
	}
	cert, key, err := selfSigned("127.0.0.1")
	if err != nil {
		return 0, nil, err
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
log_connections = 0
log_disconnections = 0
client_tls_sslmode = prefer
client_tls_cert_file = %s/client.crt
client_tls_key_file = %s/client.key
server_tls_sslmode = disable
`, pgtest.AppDB, srv.Host, srv.Port, pgtest.AppDB, port, dir, dir, dir, dir, dir)
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  fmt.Sprintf("%q %q\n", pgtest.AppUser, pgtest.AppPassword),
		"client.crt":    cert,
		"client.key":    key,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return 0, nil, err
		}
	}
	if out, err := exec.Command("chown", "-R", "postgres:postgres", dir).CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("chown %s: %v: %s", dir, err, out)
	}
	cmd := exec.Command("runuser", "-u", "postgres", "--", bin, filepath.Join(dir, "pgbouncer.ini"))
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { stopProcess(cmd) }
	for range 100 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
	return 0, nil, fmt.Errorf("did not start listening: %s", b)
}

// bouncerCPUTime is the CPU time PgBouncer's process has used so far
// (user+system, from /proc; 0 if it cannot be read).
func bouncerCPUTime(work string) time.Duration {
	if pid := bouncerPID(work); pid > 0 {
		return procCPUTime(pid)
	}
	return 0
}

// bouncerPID is PgBouncer's process, from its pid file (0 if unknown).
func bouncerPID(work string) int {
	b, err := os.ReadFile(filepath.Join(work, "pgbouncer", "pgbouncer.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// procCPUTime is the CPU time process pid has used so far, all its
// threads (user+system, from /proc; 0 if it cannot be read).
func procCPUTime(pid int) time.Duration {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command may hold spaces and parentheses: fields count from the
	// last ')'. utime and stime are the 14th and 15th, in clock ticks.
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stt) * time.Second / clockTicks
}

// clockTicks is USER_HZ, what /proc's times count in: 100 on Linux.
const clockTicks = 100

// selfSigned is a certificate and key (PEM) for host, ECDSA P-256 like
// the server's (pgtest) and interlock's own: a client with sslmode=require
// checks neither.
func selfSigned(host string) (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", err
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})), nil
}

// stopProcess ends a server the bench started: SIGTERM, then SIGKILL if
// it has not exited within 5 s.
func stopProcess(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
	}
}
