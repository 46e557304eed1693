// Package sshtest makes ed25519 keys in OpenSSH's format and runs
// OpenSSH's sshd as the target of the end-to-end tests and the ssh
// benchmark. It returns errors rather than taking a testing.TB, so that
// a benchmark program can use it too.
package sshtest

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/testkit"
)

const (
	// SSHD and SFTPServer are where Debian's openssh-server puts them.
	SSHD       = "/usr/sbin/sshd"
	SFTPServer = "/usr/lib/openssh/sftp-server"
	// Host is the loopback address sshd listens on: not 127.0.0.1, so
	// that a target can be told apart from interlock's own listeners.
	Host = "127.0.0.3"
)

// Key is an ed25519 key pair.
type Key struct {
	// Path holds the private key in OpenSSH's format (mode 0600); empty
	// for a key kept in memory.
	Path   string
	PEM    []byte
	Pub    gossh.PublicKey
	Signer gossh.Signer
}

// NewKey makes a key and, when path is not empty, writes its private half
// there with the file's name as its comment.
func NewKey(path string) (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("sshtest: generate key: %w", err)
	}
	comment := ""
	if path != "" {
		comment = filepath.Base(path)
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Key{}, fmt.Errorf("sshtest: marshal key: %w", err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("sshtest: signer: %w", err)
	}
	k := Key{Path: path, PEM: pem.EncodeToMemory(block), Pub: s.PublicKey(), Signer: s}
	if path != "" {
		if err := os.WriteFile(path, k.PEM, 0o600); err != nil {
			return Key{}, fmt.Errorf("sshtest: %w", err)
		}
	}
	return k, nil
}

// Authorized is the public key as a line of authorized_keys (without the
// newline).
func (k Key) Authorized() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.Pub)))
}

// Fingerprint is the public key's SHA256 fingerprint, as ssh-keygen -l
// prints it.
func (k Key) Fingerprint() string { return gossh.FingerprintSHA256(k.Pub) }

// Options change the sshd_config that Start writes. sshd keeps the first
// value it reads of a keyword, so these replace lines rather than add
// them.
type Options struct {
	// AuthorizedKeysFile replaces the file that authorizes CredKey.
	AuthorizedKeysFile string
	// LogLevel is VERBOSE when empty: it logs each connection, which
	// tests count.
	LogLevel string
	// MaxStartups is 200:30:300 when empty.
	MaxStartups string
	// Extra is appended to the config (Match blocks go here).
	Extra string
}

// Server is a running sshd on Host that logs in root with CredKey only.
type Server struct {
	Dir  string
	Port int
	// HostKey is the target's own host key; CredKey the key interlock
	// logs in with (authorized on the target); ClientKey a key of the
	// client's own, which the target does not know.
	HostKey, CredKey, ClientKey Key
	// Config is the sshd_config; KnownHosts an ordinary known_hosts
	// naming HostKey for [Host]:Port; Log what sshd writes.
	Config, KnownHosts, Log string

	proc *Proc
}

// Start writes keys, sshd_config and known_hosts into dir and runs sshd on
// a free port of Host until Stop; it returns once sshd answers.
func Start(ctx context.Context, dir string, o Options) (*Server, error) {
	s := &Server{Dir: dir, Config: filepath.Join(dir, "sshd_config"), KnownHosts: filepath.Join(dir, "known_hosts"),
		Log: filepath.Join(dir, "sshd.log")}
	for _, k := range []struct {
		dst  *Key
		name string
	}{{&s.HostKey, "ssh_host_ed25519_key"}, {&s.CredKey, "interlock_cred"}, {&s.ClientKey, "client_key"}} {
		var err error
		if *k.dst, err = NewKey(filepath.Join(dir, k.name)); err != nil {
			return nil, err
		}
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, []byte(s.CredKey.Authorized()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if o.AuthorizedKeysFile != "" {
		authorized = o.AuthorizedKeysFile
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	var err error
	if s.Port, err = testkit.PickPort(Host); err != nil {
		return nil, err
	}
	logLevel, maxStartups := cmp.Or(o.LogLevel, "VERBOSE"), cmp.Or(o.MaxStartups, "200:30:300")
	cfg := fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
UseDNS no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
Subsystem sftp %s
LogLevel %s
MaxStartups %s
MaxSessions 50
`, s.Port, Host, s.HostKey.Path, authorized, SFTPServer, logLevel, maxStartups) + o.Extra
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	line := fmt.Sprintf("[%s]:%d %s\n", Host, s.Port, s.HostKey.Authorized())
	if err := os.WriteFile(s.KnownHosts, []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if s.proc, err = Run(ctx, s.Log, s.Addr(), "-f", s.Config); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is sshd's address, Host:Port.
func (s *Server) Addr() string { return net.JoinHostPort(Host, strconv.Itoa(s.Port)) }

// Stop stops sshd and the sessions it started.
func (s *Server) Stop() { s.proc.Stop() }

// ClientArgs are the options of an ssh, scp or sftp client of a target:
// no user config, the strict host key check against an ordinary
// known_hosts, the key at keyPath alone, and no prompts.
func ClientArgs(knownHosts, keyPath string) []string {
	return []string{"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-i", keyPath,
		"-o", "ConnectTimeout=20"}
}

// SSHArgv is an ssh command line that logs in to s as root with the key
// at keyPath and runs command.
func (s *Server) SSHArgv(keyPath string, command ...string) []string {
	argv := append([]string{"ssh"}, ClientArgs(s.KnownHosts, keyPath)...)
	argv = append(argv, "-p", strconv.Itoa(s.Port), "root@"+Host)
	return append(argv, command...)
}

// Proc is an sshd started by Run.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Run runs sshd -D -e with args in a process group of its own, writing
// its log to logPath, and returns once it answers on addr with its SSH
// version, or with the log when it exits or does not answer within 10
// seconds.
func Run(ctx context.Context, logPath, addr string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	cmd := exec.Command(SSHD, append([]string{"-D", "-e"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own group, so that Stop also ends the sessions it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("sshtest: start sshd: %w", err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := answers(addr)
		if err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("sshtest: sshd %v exited: %s", args, b)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("sshtest: sshd %v not ready on %s: %w\n%s", args, addr, errors.Join(err, ctx.Err()), b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers dials addr and reads the server's version line.
func answers(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		return fmt.Errorf("no SSH version from %s: %q: %v", addr, banner, err)
	}
	return nil
}

// Stop ends sshd's process group: SIGTERM, then SIGKILL after 5 seconds.
func (p *Proc) Stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}
