package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/interlock/interlock/internal/testkit/sshtest"
	"github.com/interlock/interlock/test/bench/benchutil"
)

// writeConfig writes interlock's config: the journal (sync: normal), one
// ssh target holding credKey, presenting the target's own host key.
func writeConfig(dir, journalDir string, sd *sshtest.Server) (cfgPath, maskedCfg, journalPath, pin string, err error) {
	if journalDir == "" {
		journalDir = dir
	}
	jd, err := os.MkdirTemp(journalDir, "journal-")
	if err != nil {
		return "", "", "", "", err
	}
	journalPath = filepath.Join(jd, "journal.db")
	pin = benchutil.PinPath("interlock-sshbench")
	cfg := benchutil.ConfigHead(dir, journalPath, pin) + fmt.Sprintf(`targets:
  - name: bench
    protocol: ssh
    address: "127.0.0.3:%d"
    credentials:
      user: root
      key_file: %s
    known_hosts: %s
    host_key_file: %s
`, sd.Port, sd.CredKey.Path, sd.KnownHosts, sd.HostKey.Path)
	cfgPath = filepath.Join(dir, "interlock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return "", "", "", "", err
	}
	// The masked side: every detector, live, over all the target sends
	// (sftp reads and exec output alike).
	maskedCfg = filepath.Join(dir, "interlock-masked.yaml")
	return cfgPath, maskedCfg, journalPath, pin, os.WriteFile(maskedCfg, []byte(cfg+maskPolicy), 0o644)
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
