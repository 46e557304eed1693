package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/bench/benchutil"
)

const (
	sshdBin       = "/usr/sbin/sshd"
	sftpServerBin = "/usr/lib/openssh/sftp-server"
)

type sshd struct {
	dir        string
	port       int
	hostKey    string // private host key, also given to interlock
	credKey    string // authorized on the target: direct clients and interlock use it
	clientKey  string // a key the target does not know: clients under interlock
	knownHosts string // the target's real host key, as an ordinary known_hosts
	log        string
	cmd        *exec.Cmd
	done       chan struct{}
}

func writeKey(path string) (gossh.PublicKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

func authorized(k gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

// startSSHD runs sshd -D on a free port of 127.0.0.3 with its own host key,
// authorizing root with credKey only.
func startSSHD(ctx context.Context, dir string) (*sshd, error) {
	sd := &sshd{dir: dir, hostKey: filepath.Join(dir, "host_key"), credKey: filepath.Join(dir, "cred_key"),
		clientKey: filepath.Join(dir, "client_key"), knownHosts: filepath.Join(dir, "known_hosts"), log: filepath.Join(dir, "sshd.log")}
	hostPub, err := writeKey(sd.hostKey)
	if err != nil {
		return nil, err
	}
	credPub, err := writeKey(sd.credKey)
	if err != nil {
		return nil, err
	}
	if _, err := writeKey(sd.clientKey); err != nil {
		return nil, err
	}
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(authorized(credPub)+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	if sd.port, err = testkit.PickPort("127.0.0.3"); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("Port %d\nListenAddress 127.0.0.3\nHostKey %s\nAuthorizedKeysFile %s\nPidFile none\nStrictModes no\n"+
		"UsePAM no\nUseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"+
		"Subsystem sftp %s\nMaxStartups 500:30:1000\nLogLevel INFO\n", sd.port, sd.hostKey, ak, sftpServerBin)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	line := fmt.Sprintf("[127.0.0.3]:%d %s\n", sd.port, authorized(hostPub))
	if err := os.WriteFile(sd.knownHosts, []byte(line), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(sd.log)
	if err != nil {
		return nil, err
	}
	sd.cmd = exec.Command(sshdBin, "-D", "-e", "-f", cfgPath)
	sd.cmd.Stdout, sd.cmd.Stderr = logf, logf
	sd.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sd.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	sd.done = make(chan struct{})
	go func() { sd.cmd.Wait(); logf.Close(); close(sd.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.3", strconv.Itoa(sd.port)), time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			banner, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(banner, "SSH-2.0-") {
				return sd, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			sd.stop()
			b, _ := os.ReadFile(sd.log)
			return nil, fmt.Errorf("sshd not ready: %v\n%s", err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (sd *sshd) stop() {
	syscall.Kill(-sd.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-sd.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-sd.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// cpu is the CPU seconds sshd's finished connections used (its children
// and theirs, once reaped), read after a pause that lets sshd reap the
// connection that just ended.
func (sd *sshd) cpu() float64 {
	time.Sleep(300 * time.Millisecond)
	t, _ := childTicks(sd.cmd.Process.Pid)
	return float64(t) / clockTicks
}

// opts are the client options: no user config, strict host key checking
// against the ordinary known_hosts, the given key, no prompts.
func (sd *sshd) opts(key string) []string {
	return []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + sd.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key}
}

func (sd *sshd) argv(key string, command ...string) []string {
	argv := append([]string{"ssh"}, sd.opts(key)...)
	argv = append(argv, "-p", strconv.Itoa(sd.port), "root@127.0.0.3")
	return append(argv, command...)
}

// config is one interlock side's: its config files (plain and masked),
// its journal and its BPF pins.
type config struct {
	plain, masked, journal, pin string
}

// writeConfig writes the configs of the side name: its own journal (sync:
// normal), one ssh target holding credKey, presenting the target's own
// host key.
func writeConfig(dir, journalDir, name string, sd *sshd) (config, error) {
	if journalDir == "" {
		journalDir = dir
	}
	jd, err := os.MkdirTemp(journalDir, "journal-"+name+"-")
	if err != nil {
		return config{}, err
	}
	c := config{journal: filepath.Join(jd, "journal.db"), pin: benchutil.PinPath("interlock-sshbench")}
	cfg := benchutil.ConfigHead(dir, c.journal, c.pin) + fmt.Sprintf(`targets:
  - name: bench
    protocol: ssh
    address: "127.0.0.3:%d"
    credentials:
      user: root
      key_file: %s
    known_hosts: %s
    host_key_file: %s
`, sd.port, sd.credKey, sd.knownHosts, sd.hostKey)
	c.plain = filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(c.plain, []byte(cfg), 0o644); err != nil {
		return config{}, err
	}
	// The masked side: every detector, live, over all the target sends
	// (sftp reads and exec output alike).
	c.masked = filepath.Join(dir, name+"-masked.yaml")
	return c, os.WriteFile(c.masked, []byte(cfg+maskPolicy), 0o644)
}

const maskPolicy = `policy:
  default: allow
  rules:
    - name: bench-mask
      match: {protocols: [ssh]}
      action: mask
      mask: {detectors: [email, card, national_id, cloud_key, token, private_key], live: true}
`

func randomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// machine describes where the numbers come from.
func machine(bin string) []string {
	v, _ := benchutil.InterlockVersion(bin)
	ssh, _ := exec.Command("ssh", "-V").CombinedOutput()
	return []string{
		"kernel " + benchutil.Kernel() + ", " + strconv.Itoa(runtime.NumCPU()) + " CPUs",
		runtime.Version() + ", " + v,
		strings.TrimSpace(string(ssh)),
	}
}
